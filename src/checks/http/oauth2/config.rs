//! Reading a check's `oauth2` table (prometheus/common's `oauth2`; its `client_secret_file`
//! is `client_secret = "${file:PATH}"` here).

use std::sync::Arc;

use super::OAuth2;
use crate::reader::Table;

/// The `oauth2` table of `table`: `Ok(None)` without one, `Err(())` after reporting a problem.
pub(crate) fn read(
    table: &Table<'_>,
    secrets: &mut Vec<String>,
) -> Result<Option<Arc<OAuth2>>, ()> {
    let d = table.diags();
    let Some(oauth) = table.table("oauth2", format!("`oauth2` of {}", table.what())) else {
        return Ok(None);
    };
    let mut ok = true;
    let mut text = |key: &'static str, secret: bool, hint: &str| -> Option<String> {
        let Some((value, span)) = oauth.str(key) else {
            oauth.missing(key, hint);
            ok = false;
            return None;
        };
        let Some(expanded) = d.interpolate(value, &span) else {
            ok = false;
            return None;
        };
        secrets.extend(expanded.secrets);
        if secret && !expanded.value.is_empty() {
            // A client secret written as it is is still a secret.
            secrets.push(expanded.value.clone());
        }
        Some(expanded.value)
    };
    let client_id = text("client_id", false, "client_id = \"probe\"");
    let client_secret = text(
        "client_secret",
        true,
        "client_secret = \"${env:OAUTH_CLIENT_SECRET}\" (or \"${file:/etc/nightjar/secret}\")",
    );
    let token_url = text(
        "token_url",
        false,
        "token_url = \"https://auth.example.com/oauth2/token\"",
    );
    let token_url = token_url.and_then(|url| match url::Url::parse(&url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            let span = oauth.key_span("token_url").unwrap_or(oauth.span());
            d.error_hint(
                &span,
                "`token_url` is not an http:// or https:// URL",
                "token_url = \"https://auth.example.com/oauth2/token\"",
            );
            None
        }
    });
    let scopes: Vec<String> = oauth
        .str_list("scopes")
        .map(|items| items.into_iter().map(|(s, _)| s.to_string()).collect())
        .unwrap_or_default();
    let mut endpoint_params = Vec::new();
    for entry in oauth.str_map("endpoint_params").unwrap_or_default() {
        match d.interpolate(entry.value, &entry.value_span) {
            Some(expanded) => {
                secrets.extend(expanded.secrets);
                endpoint_params.push((entry.key.to_string(), expanded.value));
            }
            None => ok = false,
        }
    }
    oauth.finish();
    for other in ["basic_auth", "bearer_token"] {
        if let Some(span) = table.key_span(other) {
            d.error_hint(
                &span,
                format!("`{other}` does not go with `oauth2`"),
                "the OAuth2 token is the request's Authorization; keep one of them",
            );
            ok = false;
        }
    }
    let (Some(client_id), Some(client_secret), Some(token_url), true) =
        (client_id, client_secret, token_url, ok)
    else {
        return Err(());
    };
    Ok(Some(Arc::new(OAuth2::new(
        client_id,
        client_secret,
        token_url,
        scopes,
        endpoint_params,
    ))))
}
