"""The authorization server's HTML: sign-in, second factor (and enrollment), patient picker, consent.

Small server-rendered pages: every input has a label, errors are announced (`role="alert"`) and tied to
their field (`aria-describedby`), no script and no external asset (a strict Content-Security-Policy
forbids both), and every form carries the CSRF token. The pending authorization request travels in
hidden fields and is validated again on every step (see oauth.py), and so does `ui_locales`: every page is
in the language `page_text.choose_language` picked for the request (`lang`), words from `page_text`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from starlette.responses import HTMLResponse

from pms.api.page_text import DEFAULT, describe_scope, html, text

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
    title: str,
    body: str,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    lang: str = DEFAULT,
) -> HTMLResponse:
    """The page shell; `lang` is the language of `title` and `body` (a page_text language tag)."""
    document = (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} - PMS</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(
        document,
        status_code=status,
        headers={**SECURITY_HEADERS, "Content-Language": lang, **(headers or {})},
    )


def _form(action: str, step: str, params: Mapping[str, str], csrf: str, inner: str) -> str:
    return (
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<input type="hidden" name="step" value="{escape(step)}">{_hidden(params)}{inner}</form>'
    )


def _strong(value: str) -> str:
    return f"<strong>{escape(value)}</strong>"


def error_page(message: str, *, lang: str, status: int = 400, title: str | None = None) -> HTMLResponse:
    body = f'<p role="alert">{escape(message)}</p><p class="note">{html(lang, "error_note")}</p>'
    return page(title or text(lang, "error_title"), body, status=status, lang=lang)


def login_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    client_name: str,
    lang: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    inner = (
        f"{_alert(error)}"
        f'<label for="username">{html(lang, "username")}</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" autocomplete="username"'
        f" required autofocus{_described(error)}>"
        f'<label for="password">{html(lang, "password")}</label>'
        f'<input type="password" id="password" name="password" autocomplete="current-password" required'
        f"{_described(error)}>"
        f'<button type="submit">{html(lang, "sign_in")}</button>'
    )
    body = f"<p>{html(lang, 'login_intro', client=_strong(client_name))}</p>"
    form = _form(action, "login", params, csrf, inner)
    return page(text(lang, "login_title"), body + form, status=status, lang=lang)


def totp_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    lang: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    inner = (
        f"{_alert(error)}"
        f'<label for="code">{html(lang, "totp_label")}</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"'
        f' required autofocus aria-describedby="code-hint{" form-error" if error else ""}">'
        f'<p class="note" id="code-hint">{html(lang, "totp_hint")}</p>'
        f'<button type="submit">{html(lang, "verify")}</button>'
    )
    return page(
        text(lang, "totp_title"), _form(action, "totp", params, csrf, inner), status=status, lang=lang
    )


def enroll_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    qr_svg: str,
    secret: str,
    lang: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    hidden = {**params, "enroll_secret": secret}
    inner = (
        f"{_alert(error)}"
        f"<p>{html(lang, 'enroll_intro')}</p>"
        f'<div aria-hidden="true">{qr_svg}</div>'
        f"<p>{html(lang, 'enroll_key', key=f'<code>{escape(secret)}</code>')}</p>"
        f'<label for="code">{html(lang, "enroll_label")}</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code"'
        f" required{_described(error)}>"
        f'<button type="submit">{html(lang, "enroll_submit")}</button>'
    )
    return page(
        text(lang, "enroll_title"), _form(action, "enroll", hidden, csrf, inner), status=status, lang=lang
    )


def recovery_codes_page(
    *, action: str, params: Mapping[str, str], csrf: str, codes: Sequence[str], lang: str
) -> HTMLResponse:
    items = "".join(f"<li><code>{escape(code)}</code></li>" for code in codes)
    inner = (
        f"<p>{html(lang, 'recovery_intro')}</p>"
        f'<ul aria-label="{html(lang, "recovery_list")}">{items}</ul>'
        f'<button type="submit">{html(lang, "recovery_continue")}</button>'
    )
    return page(text(lang, "recovery_title"), _form(action, "continue", params, csrf, inner), lang=lang)


def picker_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    query: str,
    patients: Sequence[PatientChoice],
    lang: str,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    search = (
        f'<label for="q">{html(lang, "picker_search")}</label>'
        f'<input type="search" id="q" name="q" value="{escape(query)}" autofocus>'
        f'<button type="submit" class="secondary">{html(lang, "search")}</button>'
    )
    body = _alert(error) + _form(action, "search", params, csrf, search)
    if patients:
        options = "".join(
            f'<label><input type="radio" name="patient" value="{escape(p.id)}" required>'
            f"{escape(p.label)}</label>"
            for p in patients
        )
        choose = (
            f'<fieldset class="patients"><legend>{html(lang, "picker_legend")}</legend>{options}</fieldset>'
            f'<button type="submit">{html(lang, "picker_continue")}</button>'
        )
        body += _form(action, "pick", params, csrf, choose)
    elif query:
        body += f'<p role="status">{html(lang, "picker_none")}</p>'
    return page(text(lang, "picker_title"), body, status=status, lang=lang)


def consent_page(
    *,
    action: str,
    params: Mapping[str, str],
    csrf: str,
    client_name: str,
    scopes: Sequence[str],
    username: str,
    patient_label: str | None,
    lang: str,
) -> HTMLResponse:
    items = "".join(f"<li>{escape(describe_scope(scope, lang))}</li>" for scope in scopes)
    patient = (
        f"<p>{html(lang, 'consent_patient', patient=_strong(patient_label))}</p>"
        if patient_label is not None
        else ""
    )
    inner = (
        f"<p>{html(lang, 'consent_intro', client=_strong(client_name))}</p>"
        f'<ul class="scopes">{items}</ul>{patient}'
        f'<p class="note">{html(lang, "consent_user", username=escape(username))}</p>'
        f'<button type="submit" name="decision" value="approve">{html(lang, "allow")}</button> '
        f'<button type="submit" name="decision" value="deny" class="secondary">{html(lang, "deny")}</button>'
    )
    return page(text(lang, "consent_title"), _form(action, "consent", params, csrf, inner), lang=lang)


def signed_out_page(*, lang: str) -> HTMLResponse:
    return page(text(lang, "signed_out_title"), f"<p>{html(lang, 'signed_out')}</p>", lang=lang)
