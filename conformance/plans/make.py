#!/usr/bin/env python3
"""Writes the plan configurations in this folder (the suite's JSON format, as read by its
scripts/run-test-plan.py and its "Create test plan" page), so the browser steps that fill clef's
forms are written once. The ${…} placeholders are filled by ../run-plans.sh.

    python3 conformance/plans/make.py     # rewrites conformance/plans/*.json

Field names are those of templates/pages/login.html (email, password, #login-password),
consent.html (button name=decision value=allow) and logout.html (value=logout); the texts
waited for are templates/locales/en.toml's.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
ISSUER = "${CLEF_ISSUER}"

LOGIN = {
    "task": "Login",
    "optional": True,
    "match": f"{ISSUER}/login*",
    "commands": [
        ["text", "id", "email", "${USER_EMAIL}", "optional"],
        ["text", "id", "password", "${USER_PASSWORD}", "optional"],
        ["click", "id", "login-password"],
    ],
}
# The same login, with a screenshot of the login page the module must see again (prompt=login,
# max_age=1): the suite shows it for review.
LOGIN_SHOT = {
    **LOGIN,
    "commands": [["wait", "id", "login-password", 10, "Log in", "update-image-placeholder-optional"], *LOGIN["commands"]],
}
CONSENT = {
    "task": "Consent",
    "optional": True,
    "match": f"{ISSUER}/consent*",
    "commands": [["click", "css", "button[name=decision][value=allow]"]],
}
CALLBACK = {
    "task": "Verify Complete",
    "match": "*/test/*/callback*",
    "commands": [["wait", "id", "submission_complete", 10]],
}


def authorize(login=LOGIN):
    return {"match": f"{ISSUER}/authorize*", "tasks": [login, CONSENT, CALLBACK]}


def error_page(match, text, comment):
    """A page clef shows instead of redirecting (RFC 6749 §4.1.2.1), screenshot for review."""
    return {
        "comment": comment,
        "match": match,
        "tasks": [
            {
                "task": "Expect an error page",
                "match": match,
                "commands": [["wait", "xpath", "//*", 10, text, "update-image-placeholder"]],
            }
        ],
    }


LOGOUT_CONFIRM = {
    "task": "Confirm logout",
    "match": f"{ISSUER}/logout*",
    "commands": [["click", "css", "button[name=decision][value=logout]"]],
}


def logout(done="*/test/*/post_logout_redirect*"):
    return {
        "match": f"{ISSUER}/logout*",
        "tasks": [LOGOUT_CONFIRM, {"task": "Verify Complete", "match": done}],
    }


def logout_shows(text, comment, confirm=False):
    tasks = [LOGOUT_CONFIRM] if confirm else []
    tasks.append(
        {
            "task": "Expect a page, no redirect",
            "match": f"{ISSUER}/logout*",
            "commands": [["wait", "xpath", "//*", 10, text, "update-image-placeholder"]],
        }
    )
    return {"comment": comment, "match": f"{ISSUER}/logout*", "tasks": tasks}


REDIRECT_MISMATCH = error_page(
    f"{ISSUER}/authorize*",
    "The return address is not registered",
    "clef shows an error page for an unregistered redirect_uri and never redirects to it",
)
REDIRECT_MISSING = error_page(
    f"{ISSUER}/authorize*",
    "did not say where to return",
    "clef shows an error page when redirect_uri is missing (OIDC Core §3.1.2.1)",
)

STATIC_CLIENTS = {
    "client": {"client_id": "${CLIENT_ID}", "client_secret": "${CLIENT_SECRET}"},
    "client2": {"client_id": "${CLIENT2_ID}", "client_secret": "${CLIENT2_SECRET}"},
    "client_secret_post": {"client_id": "${POST_CLIENT_ID}", "client_secret": "${POST_CLIENT_SECRET}"},
}


def plan(description, clients, browser, override=None, **server):
    cfg = {
        "alias": "${ALIAS}",
        "description": description,
        "server": {"discoveryUrl": f"{ISSUER}/.well-known/openid-configuration", **server},
        **clients,
        "browser": browser,
    }
    if override:
        cfg["override"] = override
    return cfg


def basic(description):
    return plan(
        description,
        STATIC_CLIENTS,
        [authorize()],
        {
            "oidcc-prompt-login": {"browser": [authorize(LOGIN_SHOT)]},
            "oidcc-max-age-1": {"browser": [authorize(LOGIN_SHOT)]},
            "oidcc-ensure-registered-redirect-uri": {"browser": [REDIRECT_MISMATCH]},
        },
        login_hint="${USER_EMAIL}",
    )


LOGOUT_OVERRIDES = {
    "oidcc-rp-initiated-logout-bad-post-logout-redirect-uri": {
        "browser": [authorize(), logout_shows("not registered for this application", "clef refuses the unregistered post_logout_redirect_uri")]
    },
    "oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri": {
        "browser": [authorize(), logout_shows("not registered for this application", "exact match: a query added is another URI")]
    },
    "oidcc-rp-initiated-logout-modified-id-token-hint": {
        "browser": [authorize(), logout_shows("The request is malformed", "a hint whose signature does not verify is refused")]
    },
    "oidcc-rp-initiated-logout-no-id-token-hint": {
        "browser": [authorize(), logout_shows("Do you want to log out", "without id_token_hint clef asks, and then shows its own page")]
    },
    "oidcc-rp-initiated-logout-no-params": {
        "browser": [authorize(), logout_shows("You have been logged out", "no parameters: confirm, then clef's own page", confirm=True)]
    },
    "oidcc-rp-initiated-logout-no-post-logout-redirect-uri": {
        "browser": [authorize(), logout_shows("You have been logged out", "nowhere to return to: clef's own page", confirm=True)]
    },
    "oidcc-rp-initiated-logout-only-state": {
        "browser": [authorize(), logout_shows("You have been logged out", "state alone: clef's own page", confirm=True)]
    },
}

PLANS = {
    "config.json": plan("clef: Config OP", {"client": STATIC_CLIENTS["client"]}, []),
    "basic.json": basic("clef: Basic OP (static clients)"),
    "form-post.json": basic("clef: Form Post OP (static clients, response_mode=form_post)"),
    "rp-logout.json": plan(
        "clef: RP-Initiated Logout OP (static clients)",
        STATIC_CLIENTS,
        [authorize(), logout()],
        LOGOUT_OVERRIDES,
    ),
    "backchannel-logout.json": plan(
        "clef: Back-Channel Logout OP (static client with backchannel_logout_uri)",
        {"client": STATIC_CLIENTS["client"], "client2": STATIC_CLIENTS["client2"]},
        [authorize(), logout()],
    ),
    "dynamic.json": {
        # dynamic_client: the suite registers its own clients (and makes their keys for
        # private_key_jwt), so no alias and no client ids here.
        "description": "clef: Dynamic OP",
        "server": {"discoveryUrl": f"{ISSUER}/.well-known/openid-configuration", "login_hint": "${USER_EMAIL}"},
        "client": {"client_name": "conformance-dynamic-1"},
        "client2": {"client_name": "conformance-dynamic-2"},
        "browser": [authorize()],
        "override": {
            "oidcc-ensure-redirect-uri-in-authorization-request": {"browser": [REDIRECT_MISSING]},
            "oidcc-redirect-uri-query-added": {"browser": [REDIRECT_MISMATCH]},
            "oidcc-redirect-uri-query-mismatch": {"browser": [REDIRECT_MISMATCH]},
            **{
                m: {
                    "browser": [
                        {
                            "match": f"{ISSUER}/authorize*",
                            "tasks": [
                                {
                                    "task": f"Expect the login page to show the client's {field}",
                                    "match": f"{ISSUER}/login*",
                                    "commands": [["wait", "id", "login-password", 10, "Log in", "update-image-placeholder"]],
                                },
                                LOGIN,
                                CONSENT,
                                CALLBACK,
                            ],
                        }
                    ]
                }
                for m, field in [
                    ("oidcc-registration-logo-uri", "logo_uri"),
                    ("oidcc-registration-policy-uri", "policy_uri"),
                    ("oidcc-registration-tos-uri", "tos_uri"),
                ]
            },
        },
    },
}

if __name__ == "__main__":
    for name, cfg in PLANS.items():
        (HERE / name).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote conformance/plans/{name}")
