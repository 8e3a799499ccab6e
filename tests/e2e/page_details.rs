//! Page details: the code page names the address and can send a new code, sign-up and
//! reset end on a confirmation, every error page has a way forward, French typography.

use clef::admin::{ClientSpec, UserSpec};
use reqwest::header;

use crate::e2e;
use crate::support::TestServer;
use crate::support::browser::{Browser, Page};
use crate::support::rp::Rp;

const PW: &str = "correct horse battery";

fn owned(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The fields of the form posting to `action`, as the page renders them.
fn form_fields(page: &Page, action: &str) -> Vec<(String, String)> {
    let escaped = action.replace('/', "&#x2f;");
    let start = page
        .body
        .find(&format!("action=\"{escaped}\""))
        .unwrap_or_else(|| panic!("no form to {action}: {}", page.body));
    let end = start + page.body[start..].find("</form>").unwrap();
    let one = Page {
        status: page.status,
        location: None,
        headers: page.headers.clone(),
        body: format!("<form method=\"post\" {}</form>", &page.body[start..end]),
    };
    one.hidden_inputs()
}

async fn code_page_names_the_address_and_sends_a_new_code(h: &TestServer) {
    h.user_with(UserSpec {
        email: "resend@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let rp = h.first_party().await;
    let b = h.browser();
    let start = rp.start(&[]);
    let login = b.follow(b.get(&start.url).await).await;
    let mut form = form_fields(&login, "/login/code");
    form.push(("email".into(), "Resend@Example.test".into()));
    let page = b.post("/login/code", &owned(&form)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("For the address <strong class=\"address\">resend@example.test</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("A code works for 5 minutes."), "{}", page.body);
    assert!(!page.body.contains("(s)"));
    let first = h.mail.last_to("resend@example.test").six_digit_code();

    // "Send a new code": the same address, the same request, a second mail.
    let resend = form_fields(&page, "/login/code");
    assert!(resend.iter().any(|(k, v)| k == "email" && v == "resend@example.test"));
    assert!(resend.iter().any(|(k, v)| k == "req" && !v.is_empty()));
    let again = b.post("/login/code", &owned(&resend)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(h.mail.to("resend@example.test").len(), 2);
    let second = h.mail.last_to("resend@example.test").six_digit_code();
    if first != second {
        let stale = b.submit(&again, &[("code", &first)]).await;
        assert_eq!(stale.status, 200);
        assert!(stale.body.contains("Check the latest email"), "the new code replaces the old");
    }
    let back = b.follow(b.submit(&again, &[("code", &second)]).await).await;
    back.assert_redirect_to(&rp.redirect_uri);

    // The second step needs the password again, so it offers no resend form.
    h.user("step@example.test", PW).await;
    let two = h
        .client(ClientSpec {
            name: "2fa".into(),
            redirect_uris: vec!["http://127.0.0.1/2fa/cb".into()],
            skip_consent: true,
            require_2fa: true,
            ..ClientSpec::default()
        })
        .await;
    let rp2 = Rp::discover(&h.issuer, &two, "http://127.0.0.1/2fa/cb").await;
    let b2 = h.browser();
    let login = b2.follow(b2.get(&rp2.start(&[]).url).await).await;
    let step = b2.submit(&login, &[("email", "step@example.test"), ("password", PW)]).await;
    assert!(step.body.contains("autocomplete=\"one-time-code\""), "{}", step.body);
    assert!(step.body.contains("step@example.test"));
    assert!(!step.body.contains("Send a new code"));
}

async fn signup_ends_on_a_confirmation(h: &TestServer) {
    let b = h.browser();
    let form = b.get("/signup").await;
    let sent = b
        .submit(&form, &[("email", "neu@example.test"), ("password", "a fine long passphrase")])
        .await;
    assert!(sent.body.contains("neu@example.test"));
    assert!(sent.body.contains("Send a new code"), "{}", sent.body);
    let code = h.mail.last_to("neu@example.test").six_digit_code();
    let done = b.submit(&sent, &[("code", &code)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your account is ready"), "{}", done.body);
    assert!(done.body.contains("role=\"status\""));
    assert_eq!(done.button_links(), ["/account"]);
    let account = b.press_continue(&done).await;
    assert!(account.body.contains("neu@example.test"), "signed in: {}", account.body);
}

async fn reset_ends_on_a_confirmation(h: &TestServer) {
    h.user("forgot@example.test", PW).await;
    let b = h.browser();
    let forgot = b.get("/password/forgot").await;
    let page = b.submit(&forgot, &[("email", "forgot@example.test")]).await;
    assert!(page.body.contains("<strong class=\"address\">forgot@example.test</strong>"));
    // Its resend goes through the reset form again.
    assert!(!form_fields(&page, "/password/forgot").is_empty());
    let code = h.mail.last_to("forgot@example.test").six_digit_code();
    let done = b.submit(&page, &[("code", &code), ("password", "a brand new passphrase")]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Password changed"), "{}", done.body);
    assert!(done.body.contains("Every other session was signed out"));
    let account = b.press_continue(&done).await;
    assert!(account.body.contains("forgot@example.test"), "{}", account.body);
}

/// Each error page ends with a link forward, and never to an unvalidated redirect URI.
async fn error_pages_have_a_way_forward(h: &TestServer) {
    let rp = h.first_party().await;
    let b = h.browser();
    let unknown = b
        .get("/authorize?client_id=nobody&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code&scope=openid")
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.button_links(), ["/login", "/account"]);
    assert!(!unknown.body.contains("href=\"https:&#x2f;&#x2f;evil.example"));
    let mismatch = b
        .get(&format!(
            "/authorize?client_id={}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code&scope=openid",
            rp.client_id
        ))
        .await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);
    assert_eq!(mismatch.button_links(), ["/login", "/account"]);
    assert!(!mismatch.body.contains("evil.example"), "{}", mismatch.body);

    let dead_link = b.get("/login/link?token=not-a-live-token").await;
    assert_eq!(dead_link.status, 400);
    assert!(dead_link.body.contains("Request a new code"), "{}", dead_link.body);
    assert_eq!(dead_link.button_links(), ["/login"]);

    let missing = b.get_with("/nowhere", &[("accept-language", "fr")]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Aller à la page de connexion"));
    assert_eq!(missing.button_links(), ["/login", "/account"]);

    let expired = b.get("/login?req=gone").await;
    assert_eq!(expired.button_links(), ["/login", "/account"], "{}", expired.body);

    // A refused form goes back into its live sign-in request.
    let login = b.follow(b.get(&rp.start(&[]).url).await).await;
    let req = login.input("req").unwrap();
    let refused = b
        .post("/login", &[("csrf", "forged"), ("req", &req), ("email", "a@b.example")])
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.button_links()[0], format!("/login?req={req}"));
}

/// The wrong-address page links to the issuer's sign-in page.
async fn wrong_address_page_links_to_the_issuer(h: &TestServer) {
    let b = Browser::new(&h.issuer);
    let login = b.get("/login").await;
    let port = h.issuer.rsplit(':').next().unwrap();
    let other = format!("http://localhost:{port}");
    let resp = reqwest::Client::new()
        .post(h.url("/login"))
        .header(header::HOST, format!("localhost:{port}"))
        .header(header::ORIGIN, &other)
        .form(&[
            ("csrf", login.input("csrf").unwrap().as_str()),
            ("email", "a@b.example"),
            ("password", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    let body = crate::support::browser::html_unescape(&resp.text().await.unwrap());
    let target = format!("{}/login", h.issuer);
    assert!(body.contains(&format!("<a href=\"{target}\">{target}</a>")), "{body}");
    assert!(body.contains(&format!("class=\"button\" href=\"{target}\"")), "{body}");
}

/// French pages put U+202F before ? ! : ; and the HTML mail's link is a labelled button.
async fn french_typography_and_mail_buttons(h: &TestServer) {
    let b = h.browser();
    let plain = b.get_with("/login", &[("accept-language", "fr-FR")]).await;
    assert!(plain.body.contains("Mot de passe oublié\u{202F}?"), "{}", plain.body);
    assert!(!plain.body.contains(" ?"));
    // ui_locales carries French through the posts of the flow.
    let rp = h.first_party().await;
    let login = b.follow(b.get(&rp.start_with(&[], &[("ui_locales", "fr")]).url).await).await;
    h.user_with(UserSpec {
        email: "fr@example.test".into(),
        ..UserSpec::default()
    })
    .await;
    let mut form = form_fields(&login, "/login/code");
    form.push(("email".into(), "fr@example.test".into()));
    let page = b.post("/login/code", &owned(&form)).await;
    assert!(page.body.contains("Un code est valable 5 minutes."), "{}", page.body);
    let mail = h.mail.last_to("fr@example.test");
    let html = crate::support::browser::html_unescape(&mail.html);
    assert!(html.contains(">Me connecter</a>"), "{html}");
    let link = mail.link("/login/link");
    assert!(html.contains(&format!(">{link}</a>")), "the plain URL under the button: {html}");
    assert!(mail.text.contains(&link), "the text part keeps the link");
}

e2e!(
    code_page_names_the_address_and_sends_a_new_code,
    signup_ends_on_a_confirmation,
    reset_ends_on_a_confirmation,
    error_pages_have_a_way_forward,
    wrong_address_page_links_to_the_issuer,
    french_typography_and_mail_buttons,
);
