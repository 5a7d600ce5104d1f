"""Translate an argv in a test: the config when it must pass, the problems when it must be refused."""
from megatron_compat.translate import translate


def ok(argv, world_size=4, **kw):
    result = translate(list(argv), world_size=world_size, **kw)
    assert result.ok, result.problems()
    return result, result.config


def refused(argv, world_size=4):
    result = translate(list(argv), world_size=world_size)
    assert not result.ok
    return " | ".join(result.problems())
