//! Server-rendered pages: consent and errors. Plain HTML forms, no script. The sign-in and
//! account pages are in [`crate::signin_pages`].

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
        "email" => "your email address, if your node knows one",
        "offline_access" => "stay signed in when you are away (a refresh token)",
        _ => "",
    }
}

pub fn consent(client_name: &str, redirect_host: &str, user: &str, scope: &str, request: &str, csrf: &str) -> String {
    let items: String = scope
        .split_whitespace()
        .map(|s| format!("<li><strong>{}</strong>: {}</li>", esc(s), esc(describe(s))))
        .collect();
    page(
        "Allow access?",
        &format!(
            "<h1>{site} asks to sign you in</h1><p>Signed in as <strong>{user}</strong>. \
             {site} (at {host}) will be able to:</p><ul>{items}</ul>\
             <p class=\"muted\">No credential backs these claims: they come from your account.</p>\
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

pub fn signed_out() -> String {
    page("Signed out", "<h1>You are signed out</h1><p>You can close this page.</p>")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
