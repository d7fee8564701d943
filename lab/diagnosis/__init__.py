"""Why a tunnel failed and whether a lab met its expectations: nft traces, kernel drops,
node evidence, the cause from the closed list, and the checks of `expect`.

May import lab.core, lab.pptp, lab.model, lab.engines and lab.up."""
