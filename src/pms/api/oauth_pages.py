"""The authorization server's HTML: sign-in, second factor (and enrollment), patient picker, consent.

Small server-rendered pages: every input has a label, errors are announced (`role="alert"`) and tied to
their field (`aria-describedby`), no script and no external asset (a strict Content-Security-Policy
forbids both), and every form carries the CSRF token. The pending authorization request travels in
hidden fields and is validated again on every step (see oauth.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from starlette.responses import HTMLResponse

from pms.auth.scopes import Scope, parse_scope

# Clickjacking (a consent button in a hidden frame) and injection defences; no form-action directive,
# because browsers apply it to the redirect that follows the consent form.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1b1f23}
main{max-width:30rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;
box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.4rem;margin-top:0}label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=text],input[type=password],input[type=search]{width:100%;box-sizing:border-box;
padding:.6rem;font-size:1rem;border:1px solid #6a737d;border-radius:4px}
button{margin-top:1.25rem;padding:.6rem 1.2rem;font-size:1rem;border-radius:4px;border:1px solid #0b5cad;
background:#0b5cad;color:#fff;cursor:pointer}button.secondary{background:#fff;color:#0b5cad}
button:focus,input:focus{outline:3px solid #f9a825;outline-offset:2px}
.alert{border-left:4px solid #b00020;background:#fdecea;padding:.75rem;margin:1rem 0}
.note{color:#444;font-size:.9rem}ul.scopes li{margin:.3rem 0}code{word-break:break-all}
fieldset{border:0;padding:0;margin:1rem 0}legend{font-weight:600}
.patients label{font-weight:400;display:flex;gap:.5rem;align-items:center}
"""


@dataclass(frozen=True)
class PatientChoice:
    id: str
    label: str


def _hidden(params: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in params.items()
        if value
    )


def _alert(error: str | None, *, id_: str = "form-error") -> str:
    return f'<p class="alert" role="alert" id="{id_}">{escape(error)}</p>' if error else ""


def _described(error: str | None) -> str:
    return ' aria-describedby="form-error" aria-invalid="true"' if error else ""


def page(
    title: str, body: str, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} - PMS</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _form(action: str, step: str, params: Mapping[str, str], csrf: str, inner: str) -> str:
    return (
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<input type="hidden" name="step" value="{escape(step)}">{_hidden(params)}{inner}</form>'
    )


def error_page(
    message: str, *, status: int = 400, title: str = "This request cannot be completed"
) -> HTMLResponse:
    body = (
        f'<p role="alert">{escape(message)}</p>'
        '<p class="note">Go back to the application you came from and try again. If the problem persists, '
        "tell its developer or your administrator.</p>"
    )
    return page(title, body, status=status)


def login_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    client_name: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    inner = (
        f"{_alert(error)}"
        '<label for="username">Username</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" autocomplete="username"'
        f" required autofocus{_described(error)}>"
        '<label for="password">Password</label>'
        f'<input type="password" id="password" name="password" autocomplete="current-password" required'
        f"{_described(error)}>"
        '<button type="submit">Sign in</button>'
    )
    body = f"<p><strong>{escape(client_name)}</strong> wants to connect to your health record.</p>"
    return page("Sign in", body + _form(action, "login", params, csrf, inner), status=status)


def totp_page(
    *, action: str, params: Mapping[str, str], csrf: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    inner = (
        f"{_alert(error)}"
        '<label for="code">Code from your authenticator app</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"'
        f' required autofocus aria-describedby="code-hint{" form-error" if error else ""}">'
        '<p class="note" id="code-hint">Enter the 6-digit code, or one of your recovery codes '
        "(like abcde-12345) if you do not have your phone.</p>"
        '<button type="submit">Verify</button>'
    )
    return page("Two-step verification", _form(action, "totp", params, csrf, inner), status=status)


def enroll_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    qr_svg: str,
    secret: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    hidden = {**params, "enroll_secret": secret}
    inner = (
        f"{_alert(error)}"
        "<p>Your account needs two-step verification. Scan this code with an authenticator app "
        "(for example FreeOTP, Aegis or Google Authenticator):</p>"
        f'<div aria-hidden="true">{qr_svg}</div>'
        f"<p>Or type this key into the app: <code>{escape(secret)}</code></p>"
        '<label for="code">Code shown by the app</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"'
        f" required{_described(error)}>"
        '<button type="submit">Turn on two-step verification</button>'
    )
    return page("Set up two-step verification", _form(action, "enroll", hidden, csrf, inner), status=status)


def recovery_codes_page(
    *, action: str, params: Mapping[str, str], csrf: str, codes: Sequence[str]
) -> HTMLResponse:
    items = "".join(f"<li><code>{escape(code)}</code></li>" for code in codes)
    inner = (
        "<p>Two-step verification is on. Keep these recovery codes somewhere safe: each one signs you in "
        "once if you lose your phone. They are shown only now.</p>"
        f'<ul aria-label="Recovery codes">{items}</ul>'
        '<button type="submit">I have saved my codes - continue</button>'
    )
    return page("Save your recovery codes", _form(action, "continue", params, csrf, inner))


def picker_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    query: str,
    patients: Sequence[PatientChoice],
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    search = (
        '<label for="q">Find a patient by name</label>'
        f'<input type="search" id="q" name="q" value="{escape(query)}" autofocus>'
        '<button type="submit" class="secondary">Search</button>'
    )
    body = _alert(error) + _form(action, "search", params, csrf, search)
    if patients:
        options = "".join(
            f'<label><input type="radio" name="patient" value="{escape(p.id)}" required>'
            f"{escape(p.label)}</label>"
            for p in patients
        )
        choose = (
            f'<fieldset class="patients"><legend>Choose the patient</legend>{options}</fieldset>'
            '<button type="submit">Continue with this patient</button>'
        )
        body += _form(action, "pick", params, csrf, choose)
    elif query:
        body += '<p role="status">No patient matches that name.</p>'
    return page("Select a patient", body, status=status)


def consent_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    client_name: str,
    scopes: Sequence[str],
    username: str,
    patient_label: str | None,
) -> HTMLResponse:
    items = "".join(f"<li>{escape(describe_scope(scope))}</li>" for scope in scopes)
    patient = f"<p>Patient: <strong>{escape(patient_label)}</strong></p>" if patient_label is not None else ""
    inner = (
        f"<p><strong>{escape(client_name)}</strong> asks to:</p>"
        f'<ul class="scopes">{items}</ul>{patient}'
        f'<p class="note">Signed in as {escape(username)}.</p>'
        '<button type="submit" name="decision" value="approve">Allow</button> '
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button>'
    )
    return page("Allow access?", _form(action, "consent", params, csrf, inner))


def signed_out_page() -> HTMLResponse:
    return page("Signed out", "<p>You are signed out. You can close this window.</p>")


# -- scopes in plain words (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html) --------

_OTHER_SCOPES = {
    "openid": "Confirm who you are",
    "fhirUser": "See your user profile (who you are in the record)",
    "profile": "See your user profile (who you are in the record)",
    "launch": "Open in the context of your current session (patient, encounter)",
    "launch/patient": "Work with one patient you choose",
    "launch/encounter": "Work with one encounter",
    "offline_access": "Keep access after you sign out",
    "online_access": "Keep access while you stay signed in",
}
_VERBS = (
    ("read", "read"),
    ("search", "search"),
    ("create", "create"),
    ("update", "change"),
    ("delete", "delete"),
)


def _words(resource_type: str) -> str:
    if resource_type == "*":
        return "all kinds of records"
    return re.sub(r"(?<!^)(?=[A-Z])", " ", resource_type).lower() + " records"


def _describe(scope: Scope) -> str:
    verbs = [word for interaction, word in _VERBS if interaction in scope.interactions]
    action = ", ".join(verbs[:-1]) + f" and {verbs[-1]}" if len(verbs) > 1 else (verbs or ["use"])[0]
    whose = {
        "patient": "of the selected patient",
        "user": "that you are allowed to see",
        "system": "(system-wide)",
    }[scope.context]
    limited = " (only those matching: " + scope.text.split("?", 1)[1] + ")" if scope.restriction else ""
    return f"{action.capitalize()} {_words(scope.resource_type)} {whose}{limited}"


def describe_scope(text: str) -> str:
    """A SMART scope in plain words, e.g. `patient/Observation.rs` -> "Read and search observation
    records of the selected patient"."""
    if text in _OTHER_SCOPES:
        return _OTHER_SCOPES[text]
    scope = parse_scope(text)
    return _describe(scope) if scope is not None else text
