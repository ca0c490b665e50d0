"""Shared fixtures for the auth tests.

The independent client throughout is pyspnego (``spnego.client``), never our
own code, so a passing exchange means two implementations agree.
"""

import pytest

from smbca.auth import User, UserDatabase, parse_user_spec

PASSWORD = "Pa55:word"  # contains ':' on purpose


@pytest.fixture
def users() -> UserDatabase:
    return UserDatabase.from_users([
        parse_user_spec(f"alice:{PASSWORD}"),
        User("nobody", bytes(16), uid=65534, gid=65534),
    ])


def drive(acceptor_step, client, first_in: bytes | None = None, max_legs: int = 5):
    """Run ``client`` (pyspnego) against a SpnegoAcceptor's ``step`` until it
    completes, then feed its last token to the client.  Returns the AuthSteps."""
    token = client.step(first_in)
    outputs = []
    for _ in range(max_legs):
        out = acceptor_step(token)
        outputs.append(out)
        if out.complete:
            if out.out_token:
                client.step(out.out_token)
            return outputs
        token = client.step(out.out_token)
    raise AssertionError("exchange did not finish")


@pytest.fixture(name="drive")
def drive_fixture():
    return drive
