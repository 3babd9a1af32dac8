"""``codedeploy-local``'s parser is made from the flags' declarations, help included."""

from __future__ import annotations

import argparse

from agent.local_deployment.cli import build_parser
from agent.local_deployment.flags import LOCAL_FLAGS


def test_every_option_of_the_parser_is_a_declared_flag_with_its_default_and_doc() -> None:
    actions = {
        action.option_strings[-1]: action
        for action in build_parser()._actions
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
    }
    assert sorted(actions) == sorted(flag.names[-1] for flag in LOCAL_FLAGS)
    for flag in LOCAL_FLAGS:
        action = actions[flag.names[-1]]
        assert tuple(action.option_strings) == flag.names
        assert action.default == (False if flag.switch else flag.default)
        assert action.help == flag.help_text()
        assert "`" not in flag.help_text()
        assert flag.shown_default.replace("`", "") in flag.help_text()
