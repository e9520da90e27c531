import datetime as dt

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from server.accounts import mfa

SECRET = mfa.new_secret()
NOW = dt.datetime(2026, 11, 23, 18, 0, 10, tzinfo=dt.UTC)
STEP = int(NOW.timestamp()) // 30


def _code(step: int) -> str:
    return pyotp.TOTP(SECRET).at(step * 30)


def test_the_current_code_and_one_step_of_drift_either_way_are_accepted() -> None:
    for step in (STEP - 1, STEP, STEP + 1):
        assert mfa.accept_totp(SECRET, _code(step), None, NOW) == step
    assert mfa.accept_totp(SECRET, _code(STEP - 2), None, NOW) is None
    assert mfa.accept_totp(SECRET, _code(STEP + 2), None, NOW) is None


def test_a_code_at_or_before_the_last_accepted_step_is_refused() -> None:
    assert mfa.accept_totp(SECRET, _code(STEP), STEP, NOW) is None
    assert mfa.accept_totp(SECRET, _code(STEP + 1), STEP, NOW) == STEP + 1


def test_spaces_in_a_typed_code_are_ignored_and_junk_is_refused() -> None:
    code = _code(STEP)
    assert mfa.accept_totp(SECRET, f"{code[:3]} {code[3:]}", None, NOW) == STEP
    assert mfa.accept_totp(SECRET, "12345", None, NOW) is None
    assert mfa.accept_totp(SECRET, "", None, NOW) is None


def test_recovery_codes_are_distinct_and_match_however_they_are_typed() -> None:
    codes = mfa.new_recovery_codes()
    assert len(set(codes)) == 10
    assert all(len(code) == 14 and code.count("-") == 2 for code in codes)
    typed = codes[0].upper().replace("-", " ")
    assert mfa.recovery_code_hash(typed) == mfa.recovery_code_hash(codes[0])


def test_enrolment_qr_is_an_svg_data_uri_for_the_otpauth_uri() -> None:
    uri = mfa.provisioning_uri(SECRET, "clinician@example.org")
    assert uri.startswith("otpauth://totp/IOP%20Sessions:clinician%40example.org?secret=")
    assert mfa.qr_svg_data_uri(uri).startswith("data:image/svg+xml;base64,")


@given(st.text(max_size=20))
def test_arbitrary_input_never_raises(code: str) -> None:
    mfa.accept_totp(SECRET, code, None, NOW)
