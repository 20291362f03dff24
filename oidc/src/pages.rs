//! Server-rendered pages: consent and errors. Plain HTML forms, no script. The sign-in and
//! account pages are in [`crate::signin_pages`].

use crate::claims::{Evidence, Source, BACKED};

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;\
padding:.5rem;box-sizing:border-box}button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.err{color:#a00}\
.muted{color:#666;font-size:.9rem}li{margin:.3rem 0}";

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}</body></html>",
        esc(title)
    )
}

fn describe(scope: &str) -> &'static str {
    match scope {
        "openid" => "know that it is you (a identifier for this site only)",
        "profile" => "your user name",
        "email" => "see your email address, from a ProfileCredential you hold (not verified by this node)",
        "offline_access" => "stay signed in when you are away (a refresh token)",
        "membership" => "see the nodes you are a member of, from your MembershipCredentials",
        "friends" => "see who vouches for you as a friend, from your FriendCredentials",
        _ => "",
    }
}

/// The consent page: the site, each scope, and for claims backed by credentials, the
/// credentials that back them.
pub fn consent(
    client_name: &str,
    redirect_host: &str,
    user: &str,
    scope: &str,
    request: &str,
    csrf: &str,
    evidence: &[Evidence],
) -> String {
    let items: String = scope
        .split_whitespace()
        .map(|s| {
            let backed = BACKED.iter().find(|b| b.scope == s);
            let proof = match backed {
                None => String::new(),
                Some(b) => {
                    let rows: Vec<String> = evidence
                        .iter()
                        .filter(|e| e.claim == b.claim)
                        .map(|e| {
                            // An issuer's DID is the value itself; a subject's claim says who
                            // vouches for it.
                            let by = match b.source {
                                Source::Issuer => String::new(),
                                Source::Subject { .. } => format!(", issued by {}", esc(&e.issuer)),
                            };
                            format!(
                                "<li><code>{}</code>: {} <span class=\"muted\">({} {}{by})</span></li>",
                                esc(b.claim),
                                esc(&e.value),
                                esc(e.credential_type),
                                esc(&e.credential_id)
                            )
                        })
                        .collect();
                    let what = match b.source {
                        Source::Issuer => esc(b.credential_type),
                        Source::Subject { field, .. } => {
                            format!("{} with an {}", esc(b.credential_type), esc(field))
                        }
                    };
                    match rows.is_empty() {
                        true => format!(
                            "<ul><li class=\"muted\">You hold no valid {what}: nothing will be shared.</li></ul>"
                        ),
                        false => format!("<ul>{}</ul>", rows.concat()),
                    }
                }
            };
            format!("<li><strong>{}</strong>: {}{proof}</li>", esc(s), esc(describe(s)))
        })
        .collect();
    let note = match scope.split_whitespace().any(|s| BACKED.iter().any(|b| b.scope == s)) {
        true => "Claims backed by credentials are checked now: only credentials that are valid and not revoked count.",
        false => "No credential backs these claims: they come from your account.",
    };
    page(
        "Allow access?",
        &format!(
            "<h1>{site} asks to sign you in</h1><p>Signed in as <strong>{user}</strong>. \
             {site} (at {host}) will be able to:</p><ul>{items}</ul>\
             <p class=\"muted\">{note}</p>\
             <form method=\"post\" action=\"/oidc/consent\">\
             <input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            site = esc(client_name),
            host = esc(redirect_host),
            user = esc(user),
            request = esc(request),
            csrf = esc(csrf),
        ),
    )
}

pub fn error(title: &str, message: &str) -> String {
    page(title, &format!("<h1>{}</h1><p class=\"err\">{}</p>", esc(title), esc(message)))
}

/// The host of the node's public URL, as users know it.
fn node_host(issuer: &str) -> String {
    url::Url::parse(issuer).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| issuer.to_owned())
}

/// "Sign out of NODE?", for a logout request the node cannot tie to this browser's user: it
/// names the site that asked (`site`: its name and host) and offers Cancel.
pub fn confirm_logout(
    csrf: &str,
    keep: &[(&str, &str)],
    site: Option<(&str, &str)>,
    user: &str,
    issuer: &str,
) -> String {
    let hidden: String =
        keep.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v))).collect();
    let node = node_host(issuer);
    let who = match site {
        Some((name, host)) if !host.is_empty() && name != host => {
            format!("The site <strong class=\"site\">{}</strong> ({}) asks", esc(name), esc(host))
        }
        Some((name, _)) => format!("The site <strong class=\"site\">{}</strong> asks", esc(name)),
        None => "A site that did not say who it is asks".to_owned(),
    };
    page(
        &format!("Sign out of {node}?"),
        &format!(
            "<h1>Sign out of {node}?</h1><p>{who} to end your session on {node}, where you are signed in \
             as <strong>{user}</strong>.</p><p class=\"muted\">If you did not mean to sign out, choose Cancel: \
             nothing changes.</p>\
             <form method=\"post\" action=\"/oidc/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{hidden}\
             <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button>\
             <button type=\"submit\" name=\"decision\" value=\"logout\">Sign out</button></form>",
            node = esc(&node),
            user = esc(user),
            csrf = esc(csrf),
        ),
    )
}

/// After Cancel on the confirmation: nothing changed.
pub fn logout_cancelled(issuer: &str) -> String {
    let node = esc(&node_host(issuer));
    page(
        "Still signed in",
        &format!("<h1>You are still signed in</h1><p>Your session on {node} goes on. You can close this page.</p>"),
    )
}

/// The Form Post Response Mode page: the answer's fields, posted to the client by a script
/// of this origin (or by hand, with no script).
pub fn form_post(action: &str, fields: &[(String, String)]) -> String {
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(k), esc(v)))
        .collect();
    page(
        "Signing you in",
        &format!(
            "<form method=\"post\" action=\"{}\">{inputs}<noscript><button type=\"submit\">Continue</button></noscript>\
             </form><script src=\"/oidc/static/form_post.js\"></script>",
            esc(action)
        ),
    )
}

pub fn signed_out() -> String {
    signed_out_of(&[], None)
}

/// The signed-out page, loading each site's front-channel logout URL in a hidden iframe
/// (Front-Channel Logout 1.0), then going on to `next`, if any.
pub fn signed_out_of(frames: &[String], next: Option<&str>) -> String {
    let frames: String =
        frames.iter().map(|f| format!("<iframe src=\"{}\" title=\"signing out\" hidden></iframe>", esc(f))).collect();
    let (refresh, link) = match next {
        Some(n) => (
            format!("<meta http-equiv=\"refresh\" content=\"2;url={}\">", esc(n)),
            format!("<p><a href=\"{}\">Continue</a></p>", esc(n)),
        ),
        None => (String::new(), String::new()),
    };
    page("Signed out", &format!("{refresh}<h1>You are signed out</h1><p>You can close this page.</p>{link}{frames}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
