//! The CoRE link format (RFC 6690) of `/.well-known/core`: links to encode, the query filter
//! of RFC 6690 §4.1, and a parser for what a server answers.

use crate::error::{Error, Result};

/// One link of a resource directory: a target path and the attributes this crate writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The target path, without its leading `/`.
    pub target: String,
    /// Resource type (`rt`, RFC 6690 §3.1).
    pub resource_type: Option<String>,
    /// Content-Format (`ct`, RFC 7252 §7.2.1).
    pub content_format: Option<u16>,
    /// Whether the resource is observable (`obs`, RFC 7641 §6).
    pub observable: bool,
}

impl Link {
    /// A link to `target` (no leading `/`) with a resource type and a content format.
    #[must_use]
    pub fn new(target: impl Into<String>, resource_type: &str, content_format: u16) -> Self {
        Self {
            target: target.into(),
            resource_type: Some(resource_type.to_owned()),
            content_format: Some(content_format),
            observable: false,
        }
    }

    /// The same link, marked observable.
    #[must_use]
    pub fn observable(self) -> Self {
        Self {
            observable: true,
            ..self
        }
    }

    /// Appends `</target>;rt="…";ct=…[;obs]` (RFC 6690 §2).
    fn render_into(&self, out: &mut String) {
        out.push_str("</");
        out.push_str(&self.target);
        out.push('>');
        if let Some(rt) = &self.resource_type {
            out.push_str(";rt=\"");
            out.push_str(rt);
            out.push('"');
        }
        if let Some(ct) = self.content_format {
            out.push_str(";ct=");
            out.push_str(&ct.to_string());
        }
        if self.observable {
            out.push_str(";obs");
        }
    }

    /// RFC 6690 §4.1 filtering on the first query item: `href=`, `rt=` or `ct=`, a trailing
    /// `*` matching a prefix; an unknown attribute (or one the link lacks) matches nothing, no
    /// query matches everything.
    #[must_use]
    pub fn matches(&self, query: &[String]) -> bool {
        let Some(q) = query.first() else {
            return true;
        };
        let Some((name, value)) = q.split_once('=') else {
            return false;
        };
        let candidate = match name {
            "href" => format!("/{}", self.target),
            "rt" => match &self.resource_type {
                Some(rt) => rt.clone(),
                None => return false,
            },
            "ct" => match self.content_format {
                Some(ct) => ct.to_string(),
                None => return false,
            },
            _ => return false,
        };
        match value.strip_suffix('*') {
            Some(prefix) => candidate.starts_with(prefix),
            None => candidate == value,
        }
    }
}

/// The link-format document of the `links` that match `query` (RFC 6690 §4.1), comma-separated.
#[must_use]
pub fn encode(links: &[Link], query: &[String]) -> String {
    let mut out = String::new();
    for link in links.iter().filter(|l| l.matches(query)) {
        if !out.is_empty() {
            out.push(',');
        }
        link.render_into(&mut out);
    }
    out
}

/// One link as a server wrote it: its target and every attribute, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLink {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// `name` or `name=value` (quotes removed), in document order.
    pub attributes: Vec<(String, Option<String>)>,
}

impl ParsedLink {
    /// The first value of attribute `name`, if it has one.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether attribute `name` is present, with or without a value (`obs`).
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.attributes.iter().any(|(n, _)| n == name)
    }
}

/// Parses a link-format document (RFC 6690 §2): `<uri>;attr=value;attr="quoted";flag,…`.
///
/// # Errors
/// [`Error::LinkFormat`] when a link does not start with `<…>`, an attribute is empty or a
/// quoted value is unterminated.
pub fn parse(document: &str) -> Result<Vec<ParsedLink>> {
    let mut links = Vec::new();
    let mut rest = document.trim();
    while !rest.is_empty() {
        let after_open = rest
            .strip_prefix('<')
            .ok_or(Error::LinkFormat("a link starts with '<'"))?;
        let close = after_open
            .find('>')
            .ok_or(Error::LinkFormat("unterminated '<'"))?;
        let target = after_open[..close].to_owned();
        rest = &after_open[close + 1..];
        let mut attributes = Vec::new();
        while let Some(after_semicolon) = rest.strip_prefix(';') {
            let name_end = after_semicolon
                .find(['=', ';', ','])
                .unwrap_or(after_semicolon.len());
            let name = after_semicolon[..name_end].trim();
            if name.is_empty() {
                return Err(Error::LinkFormat("empty attribute name"));
            }
            rest = &after_semicolon[name_end..];
            let value = match rest.strip_prefix('=') {
                None => None,
                Some(v) => {
                    let (value, remaining) = attribute_value(v)?;
                    rest = remaining;
                    Some(value)
                }
            };
            attributes.push((name.to_owned(), value));
        }
        links.push(ParsedLink { target, attributes });
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.trim().is_empty() => "",
            None => return Err(Error::LinkFormat("links are separated by ','")),
        };
    }
    Ok(links)
}

/// A quoted or bare attribute value at the start of `s`, and what follows it.
fn attribute_value(s: &str) -> Result<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or(Error::LinkFormat("unterminated quoted value"))?;
        return Ok((quoted[..end].to_owned(), &quoted[end + 1..]));
    }
    let end = s.find([';', ',']).unwrap_or(s.len());
    Ok((s[..end].to_owned(), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<Link> {
        vec![
            Link::new("info", "m2msec.relay.info", 60),
            Link::new("storage/1/monitor", "m2msec.relay.monitor", 60).observable(),
        ]
    }

    #[test]
    fn encodes_as_rfc6690_section_2() {
        assert_eq!(
            encode(&links(), &[]),
            "</info>;rt=\"m2msec.relay.info\";ct=60,\
             </storage/1/monitor>;rt=\"m2msec.relay.monitor\";ct=60;obs"
        );
        assert_eq!(encode(&[], &[]), "");
    }

    #[test]
    fn filters_as_rfc6690_section_4_1() {
        let q = |s: &str| vec![s.to_owned()];
        assert_eq!(
            encode(&links(), &q("rt=m2msec.relay.info")),
            "</info>;rt=\"m2msec.relay.info\";ct=60"
        );
        assert_eq!(
            encode(&links(), &q("href=/storage*")).matches("</").count(),
            1
        );
        assert_eq!(encode(&links(), &q("ct=60")).matches("</").count(), 2);
        assert_eq!(encode(&links(), &q("ct=50")), "");
        assert_eq!(encode(&links(), &q("title=x")), "", "unknown attribute");
        assert_eq!(encode(&links(), &q("rt")), "", "no value");
        let bare = Link {
            target: "x".into(),
            resource_type: None,
            content_format: None,
            observable: false,
        };
        assert_eq!(encode(core::slice::from_ref(&bare), &[]), "</x>");
        assert!(!bare.matches(&q("rt=*")), "an attribute the link lacks");
    }

    #[test]
    fn parses_what_it_encodes_and_what_others_write() {
        let parsed = parse(&encode(&links(), &[])).expect("well-formed");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].target, "/info");
        assert_eq!(parsed[0].attribute("rt"), Some("m2msec.relay.info"));
        assert_eq!(parsed[0].attribute("ct"), Some("60"));
        assert!(!parsed[0].has("obs"));
        assert!(parsed[1].has("obs"));
        // RFC 6690 §5's example, with spaces after the commas and a quoted list.
        let doc = "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\", \
                   </sensors/light>;rt=\"light-lux core.sen\";obs";
        let parsed = parse(doc).expect("RFC example");
        assert_eq!(parsed[1].target, "/sensors/light");
        assert_eq!(parsed[1].attribute("rt"), Some("light-lux core.sen"));
        assert_eq!(parsed[0].attribute("if"), Some("sensor"));
    }

    #[test]
    fn malformed_documents_are_refused_not_panicked_on() {
        for bad in [
            "info",
            "<info",
            "<a>;",
            "<a>;=x",
            "<a>;rt=\"x",
            "<a> <b>",
            "<a>;rt=x;",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("").expect("empty"), []);
    }
}
