//! Text that came from a target or an endpoint, made safe to show, and secrets removed from
//! text in every encoding a URL gives them.
//!
//! Anything a target says (certificate names, headers, bodies, DNS names and data, RDAP,
//! SMTP banners, Prometheus and remote-write replies) goes through [`sanitize`] before it
//! reaches a terminal, a text log, a metric label or a page: control characters cannot
//! recolour a terminal, retitle its window, clear it or forge a log line, and a reply cannot
//! flood a log.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest failure detail kept, in bytes.
pub const MAX_DETAIL: usize = 2048;

/// The longest name (certificate subject, issuer, SAN, DNS name or record) kept, in bytes.
pub const MAX_NAME: usize = 512;

/// The longest endpoint reply kept in a log line, in bytes.
pub const MAX_REPLY: usize = 300;

/// Whether `c` must not reach a terminal or a log as it is: C0 controls (tab and newline
/// included: every place this text goes is one line), DEL, C1 controls, the bidirectional
/// overrides, embeddings, isolates and marks, and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{200e}' | '\u{200f}' | '\u{061c}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// The visible form of an unsafe character.
fn escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c <= '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

fn escaped_len(c: char) -> usize {
    match c {
        '\n' | '\r' | '\t' => 2,
        c if c <= '\u{7f}' && is_unsafe(c) => 4,
        c if is_unsafe(c) => format!("{:x}", c as u32).len() + 4,
        c => c.len_utf8(),
    }
}

/// Escapes control characters visibly (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`) and caps `text`
/// at `max` bytes, the visible `…(N bytes more)` included. Text that needs neither comes back
/// borrowed. Sanitising sanitised text changes nothing.
pub fn sanitize(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let total: usize = text.chars().map(escaped_len).sum();
    // Room for the marker that says how much was cut, should anything be.
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(format!("…({} bytes more)", text.len()).len())
    };
    let mut out = String::with_capacity(total.min(max));
    let mut consumed = 0;
    for c in text.chars() {
        if out.len() + escaped_len(c) > budget {
            break;
        }
        if is_unsafe(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
        consumed += c.len_utf8();
    }
    if consumed < text.len() {
        let marker = format!("…({} bytes more)", text.len() - consumed);
        if out.len() + marker.len() <= max {
            out.push_str(&marker);
        } else {
            // `max` is smaller than any marker: an ellipsis alone, if even that fits.
            out.clear();
            if max >= '…'.len_utf8() {
                out.push('…');
            }
        }
    }
    Cow::Owned(out)
}

/// Replaces every secret in `text` with `<redacted>`, in each form a secret takes on its way
/// through a URL or a log: as it is, percent-encoded as a path, a query, user-info or a form
/// (`+` for a space) encode it, escaped as a Rust or JSON string, and as hex bytes. A start or
/// an end of [`PARTIAL`] characters or more of any of these forms is redacted too, so an
/// excerpt that a check cut inside an echoed secret shows none of it.
pub fn redact(secrets: &[String], text: &str) -> String {
    let mut out = Cow::Borrowed(text);
    let secrets: Vec<&String> = secrets.iter().filter(|secret| !secret.is_empty()).collect();
    let forms: Vec<Vec<String>> = secrets.iter().map(|secret| forms(secret)).collect();
    for form in forms.iter().flatten() {
        if out.contains(form.as_str()) {
            out = Cow::Owned(out.replace(form.as_str(), "<redacted>"));
        }
    }
    // Every form's runs against the same text, so one form's shorter run (upper-case hex
    // sharing its digits with lower case) cannot hide another's longer one.
    let mut spans: Vec<(usize, usize)> = forms
        .iter()
        .flatten()
        .flat_map(|form| partial_runs(&out, form))
        .collect();
    if spans.is_empty() {
        return out.into_owned();
    }
    spans.sort_unstable();
    let mut cut = String::with_capacity(out.len());
    let mut at = 0;
    for (start, end) in spans {
        if start < at {
            // Overlaps the run before, already redacted: extend it.
            at = at.max(end);
            continue;
        }
        cut.push_str(&out[at..start]);
        cut.push_str("<redacted>");
        at = end;
    }
    cut.push_str(&out[at..]);
    cut
}

/// The fewest characters of a secret's start or end that [`redact`] takes for the secret.
pub const PARTIAL: usize = 8;

/// The byte ranges of `text` that start like `form` (or end like it) for [`PARTIAL`]
/// characters or more.
fn partial_runs(text: &str, form: &str) -> Vec<(usize, usize)> {
    let chars: Vec<char> = form.chars().collect();
    if chars.len() <= PARTIAL {
        return Vec::new();
    }
    let head: String = chars[..PARTIAL].iter().collect();
    let tail: String = chars[chars.len() - PARTIAL..].iter().collect();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (start, _) in text.match_indices(head.as_str()) {
        let len: usize = text[start..]
            .chars()
            .zip(&chars)
            .take_while(|(a, b)| a == *b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        spans.push((start, start + len));
    }
    for (start, _) in text.match_indices(tail.as_str()) {
        let end = start + tail.len();
        let len: usize = text[..end]
            .chars()
            .rev()
            .zip(chars.iter().rev())
            .take_while(|(a, b)| a == *b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        spans.push((end - len, end));
    }
    spans
}

/// The forms of `secret` [`redact`] looks for, the raw one first, longest first after it so
/// a form that contains another is replaced whole.
fn forms(secret: &str) -> Vec<String> {
    // The sets the url crate (WHATWG URL) encodes in a path, a query and user-info, over the
    // C0 controls, DEL and every non-ASCII byte it always encodes.
    const FRAGMENT: &[u8] = b" \"<>`";
    const QUERY: &[u8] = b" \"#<>";
    const SPECIAL_QUERY: &[u8] = b" \"#<>'";
    const PATH: &[u8] = b" \"<>`#?{}";
    const USERINFO: &[u8] = b" \"<>`#?{}/:;=@[\\]^|";
    let whatwg = |set: &'static [u8]| move |b: u8| b.is_ascii_control() || set.contains(&b);

    let mut out = vec![secret.to_string()];
    let encoders: [&dyn Fn(u8) -> bool; 7] = [
        &whatwg(FRAGMENT),
        &whatwg(QUERY),
        &whatwg(SPECIAL_QUERY),
        &whatwg(PATH),
        &whatwg(USERINFO),
        &encodes_in_component,
        &encodes_in_path_segment,
    ];
    for encodes in encoders {
        let upper = percent_encode(secret, encodes, "0123456789ABCDEF");
        out.push(percent_encode(secret, encodes, "0123456789abcdef"));
        out.push(upper);
    }
    out.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
    out.push(format!("{secret:?}").trim_matches('"').to_string());
    if let Ok(json) = serde_json::to_string(secret) {
        out.push(json.trim_matches('"').to_string());
    }
    // As hex bytes, the way checks show binary answers: "736563", "73 65 63" and upper case.
    let bytes: Vec<String> = secret.bytes().map(|b| format!("{b:02x}")).collect();
    out.push(bytes.concat());
    out.push(bytes.concat().to_ascii_uppercase());
    out.push(bytes.join(" "));
    let raw = out.remove(0);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out.retain(|form| *form != raw);
    out.insert(0, raw);
    out
}

/// What a flow template (and encodeURIComponent) encodes in a query or fragment: everything
/// but the unreserved characters. Redaction looks for a secret encoded this way too.
pub fn encodes_in_component(b: u8) -> bool {
    !(b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// What a flow template encodes in a path: [`encodes_in_component`] less `/`.
pub fn encodes_in_path_segment(b: u8) -> bool {
    b != b'/' && encodes_in_component(b)
}

/// Percent-encodes the bytes `encodes` picks, and every byte that is not ASCII.
pub fn percent_encode(text: &str, encodes: impl Fn(u8) -> bool, digits: &str) -> String {
    let digits = digits.as_bytes();
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii() && !encodes(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(digits[usize::from(b >> 4)] as char);
            out.push(digits[usize::from(b & 15)] as char);
        }
    }
    out
}

/// The markup [`escape_markup`] writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markup {
    /// HTML content and attribute values (the status page).
    Html,
    /// XML 1.0 content and attribute values (JUnit reports), which forbids most control
    /// characters even escaped: they become U+FFFD.
    Xml,
}

/// Escapes text for the content and the quoted attribute values of `markup`.
pub fn escape_markup(text: &str, markup: Markup) -> String {
    let xml = markup == Markup::Xml;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' if xml => out.push_str("&apos;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if xml && ((c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}') => {
                out.push('\u{FFFD}')
            }
            _ => out.push(c),
        }
    }
    out
}

/// The candidate closest to `name` by edit distance, if close enough to be a likely typo.
pub fn closest<'k>(name: &str, candidates: &[&'k str]) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escapes_differ_only_in_apostrophes_and_control_characters() {
        let text = "<a href=\"x\">'&'</a>\u{1b}\t";
        assert_eq!(
            escape_markup(text, Markup::Html),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{1b}\t"
        );
        assert_eq!(
            escape_markup(text, Markup::Xml),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;\u{FFFD}\t"
        );
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(
            sanitize("CN=shop.example.com", 100),
            Cow::Borrowed(_)
        ));
        assert!(matches!(sanitize("grüße ✓", 100), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_are_escaped_visibly() {
        assert_eq!(
            sanitize(
                "a\x1b]0;pwned\x07b\nc\td\re\x7f\u{85}f\u{202e}g\u{2066}",
                100
            ),
            "a\\x1b]0;pwned\\x07b\\nc\\td\\re\\x7f\\u{85}f\\u{202e}g\\u{2066}"
        );
        assert_eq!(sanitize("\0", 10), "\\x00");
    }

    #[test]
    fn long_text_is_capped_with_a_visible_marker() {
        let long = "x".repeat(1000);
        let cut = sanitize(&long, 100);
        assert!(cut.len() <= 100, "{cut}");
        assert!(cut.ends_with("bytes more)"), "{cut}");
        let kept = cut.chars().take_while(|c| *c == 'x').count();
        assert!(
            cut.contains(&format!("…({} bytes more)", 1000 - kept)),
            "{cut}"
        );
        // Exactly at the limit: kept whole.
        assert_eq!(sanitize(&"y".repeat(100), 100), "y".repeat(100));
        // Escapes count towards the limit, and a cut never splits a character.
        let input = "\x1b€".repeat(100);
        let escaped = sanitize(&input, 64);
        assert!(
            escaped.len() <= 64 && escaped.contains("bytes more"),
            "{escaped}"
        );
        // A limit too small for the marker still holds.
        assert!(sanitize(&long, 3).len() <= 3);
    }

    #[test]
    fn sanitising_twice_changes_nothing() {
        for text in [
            "plain".to_string(),
            "a\x1bb\nc".repeat(50),
            "é\u{202e}".repeat(300),
        ] {
            let once = sanitize(&text, 120).into_owned();
            assert_eq!(sanitize(&once, 120), once.as_str());
        }
    }

    #[test]
    fn a_secret_cut_by_an_excerpt_or_shown_as_hex_is_redacted() {
        let secret = "s3cret-Token-0123456789".to_string();
        let secrets = std::slice::from_ref(&secret);
        // An excerpt cut inside the echoed secret, at its start and at its end.
        let cut = redact(secrets, "it sent: \"AUTH s3cret-Token-01\"… (4000 bytes)");
        assert_eq!(cut, "it sent: \"AUTH <redacted>\"… (4000 bytes)");
        let tail = redact(secrets, "…ret-Token-0123456789 OK");
        assert_eq!(tail, "…<redacted> OK");
        // Hex, as binary answers are shown, whole or cut.
        let hex: Vec<String> = secret.bytes().map(|b| format!("{b:02x}")).collect();
        let spaced = redact(secrets, &format!("sent {} instead", hex.join(" ")));
        assert_eq!(spaced, "sent <redacted> instead");
        let joined = redact(secrets, &format!("hex {}…", &hex.concat()[..30]));
        assert_eq!(joined, "hex <redacted>…");
        // Fewer than PARTIAL characters of it, and other text, stay.
        assert_eq!(redact(secrets, "s3cret- and Token"), "s3cret- and Token");
        // Both a start and an end in one text, and the whole secret twice.
        let both = redact(secrets, &format!("{secret}{secret} s3cret-Tok 23456789"));
        assert_eq!(both, "<redacted><redacted> <redacted> <redacted>");
    }

    #[test]
    fn secrets_are_redacted_in_every_url_encoding() {
        let secret = "P4th s3cret@\"é%/x+y".to_string();
        let mut url = url::Url::parse("http://h/").unwrap();
        url.set_path(&format!("/a/{secret}"));
        url.query_pairs_mut().append_pair("t", &secret);
        let shown = url.to_string();
        let mut user = url::Url::parse("http://h/").unwrap();
        user.set_password(Some(&secret)).unwrap();
        let text = format!("{shown} {user} {secret:?} raw:{secret}");
        let redacted = redact(std::slice::from_ref(&secret), &text);
        assert!(!redacted.contains("s3cret"), "{redacted}");
        assert_eq!(redacted.matches("<redacted>").count(), 5, "{redacted}");
        // Other text is left alone.
        assert_eq!(redact(&[secret], "nothing here"), "nothing here");
    }
}
