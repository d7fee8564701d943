"""Parsing for `pptp-lab exec LAB NODE CMD...`: our options may stand anywhere before CMD;
from CMD's first word on, every word is CMD's own, even one spelled like our option
(`exec default client curl --help`, `exec default client mytool --kernel x`). Click alone
either takes our options anywhere (so they would be taken from CMD) or only before LAB."""
from __future__ import annotations

from typer.core import TyperCommand


def command_start(params, args: list[str]) -> int | None:
    """Where CMD begins in `args`: the first word after all the positional arguments;
    None when there is no CMD, or a "--" ends our options before it (click then handles
    the rest as it always did)."""
    wanted = sum(p.param_type_name == "argument" for p in params)
    valued = {o for p in params if p.param_type_name == "option" and not getattr(p, "is_flag", False)
              for o in (*p.opts, *p.secondary_opts)}
    seen = i = 0
    while i < len(args):
        if args[i] == "--":
            return None
        if seen == wanted:
            return i
        word = args[i]
        if word.startswith("-") and word != "-":
            i += 2 if word in valued else 1  # "--kernel x" is two words, "--kernel=x" one
            continue
        seen += 1
        i += 1
    return None


class NodeCommand(TyperCommand):
    def parse_args(self, ctx, args):
        args = list(args)
        start = command_start(self.get_params(ctx), args)
        if start is not None:
            args.insert(start, "--")  # click stops reading options here
        return super().parse_args(ctx, args)
