"""Action `lab_unpack`: unpack a node's rendered files (one tar, base64, in the host
variable named by `bundle_var`) at / in the node and then run `command`, in one exec
through the host's connection: the tar goes in on the exec's stdin
(community.docker.docker_api supports in_data). No module process, no Python in the node,
no temporary file, and the command line is the playbook's fixed text. The bundle is read
from the host's variables as data (never templated) and is not a task argument, so it
never shows in task output or events: the task needs no `no_log` and its errors show."""
from __future__ import annotations

import base64
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # no remote temporary directory: three execs saved per node
    _VALID_ARGS = frozenset(("bundle_var", "command"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        try:
            data = base64.b64decode(str(task_vars[self._task.args["bundle_var"]]), validate=True)
            command = str(self._task.args["command"])
        except (KeyError, ValueError) as exc:
            raise AnsibleActionFail(f"lab_unpack needs bundle_var (a host variable holding base64) "
                                    f"and command: {exc}")
        cmd = "tar -x -f - -C / --no-same-owner && " + command
        res = self._low_level_execute_command(cmd, in_data=data)
        result.update(rc=res["rc"], stdout=res.get("stdout", ""), stderr=res.get("stderr", ""),
                      changed=True, cmd=shlex.split(command))
        if res["rc"] != 0:
            result.update(failed=True, msg=(res.get("stderr") or res.get("stdout") or "").strip()[-300:]
                          or f"exit {res['rc']}")
        return result
