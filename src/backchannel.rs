//! The back-channel logout worker (Back-Channel Logout 1.0 §2.5): delivers, off the request
//! path, the logout tokens that ending a session queued in the database.

use std::collections::HashSet;
use std::time::Duration;

use openidconnect::reqwest;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::keys::Alg;
use crate::oauth::backchannel::{LogoutTokenClaims, MAX_ATTEMPTS, Outcome, SEND_TIMEOUT, TYP, outcome, retry_after};
use crate::secret::random_token;
use crate::store::PendingLogout;

/// How often the queue is looked at: rows come from this instance, from others, and from
/// `clef sessions end`, so polling is the one way that sees them all.
const POLL: Duration = Duration::from_secs(1);
/// A claimed row is this instance's for this long; longer than one send can take, so only an
/// instance that died mid-send lets it lapse, and then another sends it again.
const LEASE: i64 = 60;
/// Rows claimed at once; sent in parallel, so one slow RP does not hold up the others.
const BATCH: i64 = 16;
/// At shutdown, releasing the rows still in flight may take this long at most.
const RELEASE_WITHIN: Duration = Duration::from_secs(2);

/// Runs until `stop` changes (or its sender goes). Rows cut off by the stop are released,
/// so the next start sends them at once.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    // Redirects off: the RP's URI is where the token goes, nowhere else (SSRF).
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "back-channel logout disabled: no HTTP client");
            return;
        }
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = state.clock.now();
        let claimed = match state.db.backchannel_claim(now, now + LEASE, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout: reading the queue failed; trying again");
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        let mut open: HashSet<String> = claimed.iter().map(|p| p.notification_id.clone()).collect();
        let mut sends = JoinSet::new();
        for p in claimed {
            sends.spawn(deliver(state.clone(), http.clone(), p));
        }
        let stopped = loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break true,
                done = sends.join_next() => match done {
                    None => break false,
                    Some(Ok(id)) => { open.remove(&id); }
                    // A panicked send keeps its lease, which lapses: the row is tried again.
                    Some(Err(e)) => tracing::error!(error = %e, "back-channel logout send failed"),
                },
            }
        };
        if stopped {
            sends.abort_all();
            release(&state, open).await;
            return;
        }
    }
}

/// Shutdown must not wait on slow RPs: the cut-off rows become due again at once.
async fn release(state: &AppState, open: HashSet<String>) {
    let n = open.len();
    let all = async {
        for id in &open {
            if let Err(e) = state.db.backchannel_release(id).await {
                tracing::warn!(error = %e, "back-channel logout: releasing a notification failed; its lease will lapse");
            }
        }
    };
    if tokio::time::timeout(RELEASE_WITHIN, all).await.is_err() {
        tracing::warn!("back-channel logout: releasing notifications timed out; their leases will lapse");
    } else if n > 0 {
        tracing::info!(pending = n, "back-channel logout: notifications left for the next start");
    }
}

/// One attempt at one notification; returns its id once the row says what happened.
async fn deliver(state: AppState, http: reqwest::Client, p: PendingLogout) -> String {
    if let Err(e) = attempt(&state, &http, &p).await {
        tracing::warn!(client_id = %p.client_id, error = %e, "back-channel logout: bookkeeping failed; the lease will lapse");
    }
    p.notification_id
}

async fn attempt(state: &AppState, http: &reqwest::Client, p: &PendingLogout) -> Result<(), crate::store::StoreError> {
    let client = match state.db.client_get(&p.client_id).await? {
        Some(c) => c,
        None => return state.db.backchannel_done(&p.notification_id).await,
    };
    let Some(uri) = client.backchannel_logout_uri.as_deref() else {
        // Unregistered since: nothing to tell.
        return state.db.backchannel_done(&p.notification_id).await;
    };
    let now = state.clock.now();
    // The queue holds the local user id; a pairwise client knows the user by its own `sub`
    // (OIDC Core §8.1), the one its ID tokens carried.
    let sub = match crate::oauth::pairwise::subject(&state.db, &state.hmac_key, &client, &p.sub).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(client_id = %client.client_id, error = %e, "back-channel logout: pairwise subject unavailable");
            return retry_or_give_up(state, p, now, "pairwise subject unavailable").await;
        }
    };
    let claims = LogoutTokenClaims::new(
        &state.config.issuer,
        &client.client_id,
        &sub,
        &p.sid,
        client.backchannel_logout_session_required,
        random_token(16),
        now,
    );
    // Signed at each attempt, so a retry carries a fresh iat/exp rather than a stale token.
    let alg = Alg::parse(&client.id_token_alg).unwrap_or(Alg::RS256);
    let token = match state.keys.get().sign(alg, TYP, &claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(client_id = %client.client_id, error = %e, "back-channel logout: signing failed");
            return retry_or_give_up(state, p, now, "signing failed").await;
        }
    };
    // §2.5: POST, application/x-www-form-urlencoded, one `logout_token` parameter.
    let sent = http.post(uri).form(&[("logout_token", token.as_str())]).send().await;
    let status = match sent {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => {
            let why = if e.is_timeout() { "timed out" } else { "could not connect" };
            return retry_or_give_up(state, p, now, why).await;
        }
    };
    match outcome(status) {
        Outcome::Delivered => {
            tracing::info!(client_id = %client.client_id, attempts = p.attempts, "back-channel logout delivered");
            state.db.backchannel_done(&p.notification_id).await
        }
        Outcome::Refused => {
            tracing::warn!(client_id = %client.client_id, status, "back-channel logout refused by the client; not retried");
            state.db.backchannel_done(&p.notification_id).await
        }
        Outcome::Retry => retry_or_give_up(state, p, now, &format!("answered {status}")).await,
    }
}

async fn retry_or_give_up(state: &AppState, p: &PendingLogout, now: i64, why: &str) -> Result<(), crate::store::StoreError> {
    match retry_after(p.attempts) {
        Some(delay) if p.attempts < MAX_ATTEMPTS => {
            tracing::info!(client_id = %p.client_id, attempts = p.attempts, why, retry_in = delay, "back-channel logout failed; will retry");
            state.db.backchannel_retry(&p.notification_id, now + delay).await
        }
        _ => {
            tracing::warn!(client_id = %p.client_id, attempts = p.attempts, why, "back-channel logout failed; giving up");
            state.db.backchannel_done(&p.notification_id).await
        }
    }
}
