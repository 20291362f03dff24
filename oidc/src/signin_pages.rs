//! Server-rendered sign-in and account pages. Forms work without script; the one static
//! script (`/oidc/static/signin.js`) adds passkeys and continues a wallet approval by
//! itself.

use crate::approval::Started;
use crate::pages::{esc, page};
use crate::passkeys::PasskeyInfo;
use serde_json::Value;

const EXTRA_STYLE: &str =
    "<style>h2{font-size:1.1rem}.code{font:600 1.6rem ui-monospace,monospace;letter-spacing:.1em}\
.qr svg{width:10rem;height:10rem}section{border-top:1px solid #ddd;margin-top:1.5rem}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .4rem;vertical-align:top}\
td form{margin:0}td button{margin:0}</style>";
const SCRIPT: &str = "<script src=\"/oidc/static/signin.js\"></script>";

/// Where a sign-in goes: a pending authorization request, or the account page.
pub struct SignInForms<'a> {
    /// The pending request's id; empty for the account page.
    pub request: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub passkeys: bool,
    pub approval: Option<&'a Started>,
}

fn date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map(|t| t.date().to_string()).unwrap_or_default()
}

/// Date and time (UTC, to the minute).
fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
        .unwrap_or_default()
}

/// The sign-ins table of the account page.
fn activity(events: &[crate::provider::SignInEvent]) -> String {
    if events.is_empty() {
        return "<p class=\"muted\">No sign-ins recorded yet.</p>".to_owned();
    }
    let rows: String = events
        .iter()
        .map(|e| {
            let site = e.site.as_deref().map(esc).unwrap_or_else(|| "this node's pages".to_owned());
            let method = crate::amr::describe(&e.method);
            format!(
                "<tr><td>{}</td><td>{site}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(e.at)),
                esc(&method),
                esc(e.address.as_deref().unwrap_or("-"))
            )
        })
        .collect();
    format!("<table id=\"activity\"><tr><th>When</th><th>Where</th><th>How</th><th>From</th></tr>{rows}</table>")
}

/// The QR code of `data` as inline SVG (no XML declaration), or nothing if it will not fit.
pub fn qr_svg(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).build();
            match svg.find("<svg") {
                Some(at) => svg[at..].to_owned(),
                None => String::new(),
            }
        }
        Err(_) => String::new(),
    }
}

fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", esc(value))
}

/// Every way to sign in: password, passkey, and wallet approval.
fn methods(f: &SignInForms<'_>) -> String {
    let password_action = match f.request.is_empty() {
        true => "/account/login",
        false => "/oidc/login",
    };
    let keep = format!("{}{}", hidden("request", f.request), hidden("csrf", f.csrf));
    let mut out = format!(
        "<form method=\"post\" action=\"{password_action}\">{keep}\
         <label for=\"username\">User name</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username webauthn\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"muted\">No password yet? Set one with <code>sichat password set</code>.</p>",
        username = esc(f.username),
    );
    if f.passkeys {
        out.push_str(&format!(
            "<section><h2>Passkey</h2><p class=\"muted\">Pick your passkey in the user name field's suggestions, \
             or:</p>\
             <form id=\"passkey-form\" method=\"post\" action=\"/oidc/passkey/login\">{keep}\
             {ceremony}{credential}\
             <button type=\"button\" id=\"passkey-signin\" data-options=\"/oidc/passkey/options\">Sign in with a passkey</button>\
             </form><p id=\"passkey-error\" class=\"err\" role=\"alert\" hidden></p></section>",
            ceremony = hidden("ceremony", ""),
            credential = hidden("credential", ""),
        ));
    }
    if let Some(a) = f.approval {
        let renew = match f.request.is_empty() {
            true => "/account".to_owned(),
            false => format!("/oidc/login?request={}", f.request),
        };
        out.push_str(&format!(
            "<section><h2>Approve with your wallet</h2>\
             <p>On a device with your wallet, run</p><p><code>sichat login approve {code}</code></p>\
             <p class=\"code\" id=\"approval-code\">{code}</p><div class=\"qr\" aria-label=\"QR code of the sign-in code\">{qr}</div>\
             <p class=\"muted\">The code works once, for two minutes. This page goes on by itself once you approve.</p>\
             <div id=\"approval\" data-status=\"/oidc/approval/status?approval={handle}\" data-renew=\"{renew}\"></div>\
             <form id=\"approval-form\" method=\"post\" action=\"/oidc/approval/continue\">{keep}{approval}\
             <button type=\"submit\">Continue after approving</button></form></section>",
            code = esc(&a.code),
            qr = qr_svg(&a.uri),
            handle = esc(&a.handle),
            renew = esc(&renew),
            approval = hidden("approval", &a.handle),
        ));
    }
    out
}

/// The sign-in page of an authorization request.
pub fn login(node: &str, client_name: &str, forms: &SignInForms<'_>, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{EXTRA_STYLE}<h1>Sign in to {site}</h1><p class=\"muted\">with your account on {node}</p>{error}{methods}{SCRIPT}",
            site = esc(client_name),
            node = esc(node),
            methods = methods(forms),
        ),
    )
}

/// The account page of a browser that is not signed in.
pub fn account_signed_out(node: &str, forms: &SignInForms<'_>, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    page(
        "Your account",
        &format!(
            "{EXTRA_STYLE}<h1>Your account</h1><p class=\"muted\">Sign in to your account on {node}.</p>{error}{methods}{SCRIPT}",
            node = esc(node),
            methods = methods(forms),
        ),
    )
}

/// What the account page shows of a signed-in user.
pub struct AccountView<'a> {
    pub node: &'a str,
    pub user: &'a str,
    pub did: &'a str,
    pub csrf: &'a str,
    /// As `Provider::consents` returns them.
    pub consents: &'a [Value],
    pub passkeys: Option<&'a [PasskeyInfo]>,
    /// The latest sign-ins, newest first.
    pub activity: &'a [crate::provider::SignInEvent],
    pub notice: Option<&'a str>,
}

/// The account page of a signed-in user: sites allowed, passkeys, sign-out.
pub fn account(v: &AccountView<'_>) -> String {
    let csrf = hidden("csrf", v.csrf);
    let notice = v.notice.map(|n| format!("<p role=\"status\"><strong>{}</strong></p>", esc(n))).unwrap_or_default();
    let sites = if v.consents.is_empty() {
        "<p class=\"muted\">You have not allowed any site to sign you in.</p>".to_owned()
    } else {
        let rows: String = v
            .consents
            .iter()
            .map(|c| {
                let id = c["client_id"].as_str().unwrap_or_default();
                let name = c["client_name"].as_str().unwrap_or("(unnamed site)");
                let hosts: Vec<String> = c["redirect_uris"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|u| u.as_str().and_then(|u| url::Url::parse(u).ok()))
                            .filter_map(|u| u.host_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut hosts_unique = hosts;
                hosts_unique.dedup();
                format!(
                    "<tr class=\"consent\"><td><strong>{name}</strong><br><span class=\"muted\">{hosts}</span></td>\
                     <td>{scope}</td><td>{date}</td><td><form method=\"post\" action=\"/account/consents/revoke\">{csrf}\
                     {client}<button type=\"submit\">Revoke</button></form></td></tr>",
                    name = esc(name),
                    hosts = esc(&hosts_unique.join(", ")),
                    scope = esc(c["scope"].as_str().unwrap_or_default()),
                    date = date(c["created_at"].as_i64().unwrap_or_default()),
                    client = hidden("client_id", id),
                )
            })
            .collect();
        format!("<table><tr><th>Site</th><th>Scopes</th><th>Since</th><th></th></tr>{rows}</table>")
    };
    let passkeys = match v.passkeys {
        None => "<p class=\"muted\">Passkeys need this node's public URL to have a host name.</p>".to_owned(),
        Some(list) => {
            let rows: String = list
                .iter()
                .map(|p| {
                    let used = p.last_used_at.map(date).unwrap_or_else(|| "never".into());
                    format!(
                        "<tr class=\"passkey\"><td>{name}</td><td>added {added}</td><td>last used {used}</td>\
                         <td><form method=\"post\" action=\"/account/passkeys/remove\">{csrf}{id}\
                         <button type=\"submit\">Remove</button></form></td></tr>",
                        name = esc(&p.name),
                        added = date(p.created_at),
                        id = hidden("id", &p.id),
                    )
                })
                .collect();
            let table = match list.is_empty() {
                true => "<p class=\"muted\">No passkey yet.</p>".to_owned(),
                false => format!("<table>{rows}</table>"),
            };
            format!(
                "{table}<form id=\"passkey-add-form\" method=\"post\" action=\"/account/passkeys\">{csrf}\
                 {link}{ceremony}{credential}<label for=\"passkey-name\">Name of the new passkey</label>\
                 <input type=\"text\" id=\"passkey-name\" name=\"name\" value=\"passkey\" maxlength=\"64\" required>\
                 <button type=\"button\" id=\"passkey-add\" data-options=\"/account/passkeys/options\">Add a passkey</button>\
                 </form><p id=\"passkey-error\" class=\"err\" role=\"alert\" hidden></p>",
                link = hidden("link", ""),
                ceremony = hidden("ceremony", ""),
                credential = hidden("credential", ""),
            )
        }
    };
    page(
        "Your account",
        &format!(
            "{EXTRA_STYLE}<h1>Your account</h1>{notice}<p>Signed in as <strong id=\"user\">{user}</strong> on {node}.</p>\
             <p class=\"muted\"><code>{did}</code></p>\
             <section><h2>Sites you allowed</h2>{sites}</section>\
             <section><h2>Passkeys</h2>{passkeys}</section>\
             <section><h2>Recent sign-ins</h2>{activity}</section>\
             <section><form method=\"post\" action=\"/account/signout\">{csrf}<button type=\"submit\">Sign out</button></form>\
             <form method=\"post\" action=\"/account/signout-everywhere\">{csrf}\
             <button type=\"submit\" id=\"signout-everywhere\">Sign out everywhere else</button>\
             <p class=\"muted\">Ends your other browser sessions and every site's access: each site must sign you in again.</p>\
             </form></section>{SCRIPT}",
            user = esc(v.user),
            node = esc(v.node),
            did = esc(v.did),
            activity = activity(v.activity),
        ),
    )
}

/// The page a `sichat passkey add` link opens.
pub fn add_passkey_by_link(user: &str, name: &str, csrf: &str, link: &str) -> String {
    page(
        "Add a passkey",
        &format!(
            "{EXTRA_STYLE}<h1>Add a passkey</h1><p>For <strong>{user}</strong>. Your browser or security key will ask \
             you to confirm.</p>\
             <form id=\"passkey-add-form\" method=\"post\" action=\"/account/passkeys\">{csrf}{link}{ceremony}{credential}\
             <label for=\"passkey-name\">Name of the new passkey</label>\
             <input type=\"text\" id=\"passkey-name\" name=\"name\" value=\"{name}\" maxlength=\"64\" required>\
             <button type=\"button\" id=\"passkey-add\" data-options=\"/account/passkeys/options\">Add a passkey</button>\
             </form><p id=\"passkey-error\" class=\"err\" role=\"alert\" hidden></p>{SCRIPT}",
            user = esc(user),
            name = esc(name),
            csrf = hidden("csrf", csrf),
            link = hidden("link", link),
            ceremony = hidden("ceremony", ""),
            credential = hidden("credential", ""),
        ),
    )
}

/// After a passkey was added through a link.
pub fn passkey_added(name: &str) -> String {
    page(
        "Passkey added",
        &format!(
            "<h1>Passkey added</h1><p id=\"added\">{} is ready: sign in to sites with it on your node's sign-in \
             page. You can close this page.</p>",
            esc(name)
        ),
    )
}

/// Where a QR code of a sign-in code leads when a phone opens it in a browser.
pub fn approve_hint(code: &str) -> String {
    page(
        "Approve a sign-in",
        &format!(
            "<h1>Approve a sign-in</h1><p>Approve it with your wallet: run</p><p><code>sichat login approve {}</code></p>\
             <p class=\"muted\">Check what the wallet shows before you confirm.</p>",
            esc(code)
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_codes_are_inline_svg() {
        let svg = super::qr_svg("https://id.example.org/oidc/approve?code=ABCD-1234");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    }
}
