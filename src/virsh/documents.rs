//! Many `dumpxml` outputs in one stream, told apart without a marker after
//! each command: every output is one XML document, which ends where its
//! root element closes (comments, CDATA sections and quoted attribute
//! values are skipped, so no text inside them can end it early), and each
//! document names its domain in its `<name>`. A command that failed
//! printed nothing (its error went to stderr): the next document then
//! names another domain. Pure functions over `&str`.

use std::borrow::Cow;
use std::collections::HashMap;

/// One XML document of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    pub text: &'a str,
    /// The text of the root's `<name>` child, entities resolved, where it
    /// has one.
    pub name: Option<Cow<'a, str>>,
}

/// The documents of `text` in order; only blanks may stand between them.
/// `Err` says what is not XML documents.
pub fn split_documents(text: &str) -> Result<Vec<Document<'_>>, String> {
    let mut documents = Vec::new();
    let mut at = 0;
    loop {
        at += text[at..].len() - text[at..].trim_start().len();
        if at == text.len() {
            return Ok(documents);
        }
        if !text[at..].starts_with('<') {
            return Err(format!("text outside any XML document at byte {at}"));
        }
        let document = read_document(text, at)?;
        at += document.text.len();
        documents.push(document);
    }
}

const UNTERMINATED: &str = "the output ends inside an XML document";

/// The document that starts at `start` (a `<`).
fn read_document(text: &str, start: usize) -> Result<Document<'_>, String> {
    let mut depth = 0usize;
    let mut name = None;
    let mut at = start;
    loop {
        let open = at + text[at..].find('<').ok_or(UNTERMINATED)?;
        let rest = &text[open..];
        let past = |close: &str| {
            rest.find(close)
                .map(|end| open + end + close.len())
                .ok_or(UNTERMINATED)
        };
        // What a document may hold besides elements and text.
        let skipped = [
            ("<!--", "-->"),
            ("<![CDATA[", "]]>"),
            ("<?", "?>"),
            ("<!", ">"),
        ]
        .into_iter()
        .find(|(opener, _)| rest.starts_with(opener));
        if let Some((_, close)) = skipped {
            at = past(close)?;
            continue;
        }
        let end = tag_end(text, open).ok_or(UNTERMINATED)?;
        let tag = &text[open + 1..end - 1];
        if tag.starts_with('/') {
            depth = depth
                .checked_sub(1)
                .ok_or_else(|| format!("an end tag with no element open at byte {open}"))?;
        } else if !tag.ends_with('/') {
            depth += 1;
            if depth == 2 && name.is_none() && tag_name(tag) == "name" {
                name = text[end..]
                    .find('<')
                    .map(|len| unescape(&text[end..end + len]));
            }
        }
        at = end;
        if depth == 0 {
            return Ok(Document {
                text: &text[start..end],
                name,
            });
        }
    }
}

/// Just past the `>` that closes the tag opened at `open`, quoted
/// attribute values skipped.
fn tag_end(text: &str, open: usize) -> Option<usize> {
    let mut quote = None;
    for (offset, byte) in text.as_bytes()[open..].iter().enumerate() {
        match (quote, byte) {
            (None, b'"' | b'\'') => quote = Some(*byte),
            (Some(q), _) if q == *byte => quote = None,
            (None, b'>') => return Some(open + offset + 1),
            _ => {}
        }
    }
    None
}

/// Character data with its references resolved: the five entities XML
/// predefines and `&#N;`/`&#xH;`; anything else stays as written.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        plain.push_str(&rest[..at]);
        rest = &rest[at..];
        let resolved = rest.find(';').and_then(|end| {
            let c = match &rest[1..end] {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "apos" => '\'',
                "quot" => '"',
                code => {
                    let number = code.strip_prefix('#')?;
                    let value = match number.strip_prefix('x') {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(value)?
                }
            };
            Some((c, end + 1))
        });
        match resolved {
            Some((c, len)) => {
                plain.push(c);
                rest = &rest[len..];
            }
            None => {
                plain.push('&');
                rest = &rest[1..];
            }
        }
    }
    plain.push_str(rest);
    Cow::Owned(plain)
}

fn tag_name(tag: &str) -> &str {
    let end = tag
        .find(|c: char| c.is_ascii_whitespace() || c == '/')
        .unwrap_or(tag.len());
    &tag[..end]
}

/// Lines the documents up with the commands that asked for them, in
/// order; `names[n]` is the name of command `n`'s domain. A command is
/// `None` when the next document is another domain's: it failed. A
/// document no command still waiting asks for (a name that looked up
/// another domain, by UUID say) is nobody's. Of two reads of one domain
/// (live, then config), a lone document goes to the first: a domain that
/// went away fails the second.
pub fn align<'a>(names: &[&str], documents: &[Document<'a>]) -> Vec<Option<&'a str>> {
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    for name in names {
        *waiting.entry(name).or_default() += 1;
    }
    let mut at = 0;
    let mut aligned = Vec::with_capacity(names.len());
    for name in names {
        let asked = |document: &Document| {
            document
                .name
                .as_deref()
                .is_some_and(|n| waiting.get(n).is_some_and(|count| *count > 0))
        };
        while documents.get(at).is_some_and(|d| !asked(d)) {
            at += 1;
        }
        *waiting.get_mut(name).expect("counted above") -= 1;
        let answer = documents
            .get(at)
            .filter(|d| d.name.as_deref() == Some(*name));
        at += usize::from(answer.is_some());
        aligned.push(answer.map(|d| d.text));
    }
    aligned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    const A: &str = "it's \"a\" <&>";
    const B: &str = "b";

    /// A domain's XML as libvirt writes it: the name's markup escaped.
    fn doc(name: &str, body: &str) -> String {
        let name = name
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\'', "&apos;")
            .replace('"', "&quot;");
        format!(
            "<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>0</uuid>\n{body}</domain>\n\n"
        )
    }

    #[test]
    fn real_dumpxml_outputs_split_at_their_root_ends() {
        let live = fixture("virsh/dumpxml-lab-agent-live.xml");
        let off = fixture("virsh/dumpxml-lab-off.xml");
        let stream = format!("{live}\n{off}\n");
        let documents = split_documents(&stream).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].text, live.trim_end());
        assert_eq!(documents[1].text, off.trim_end());
        assert_eq!(documents[0].name.as_deref(), Some("lab-agent"));
        assert_eq!(documents[1].name.as_deref(), Some("lab-off"));
    }

    /// Metadata is the definer's XML: an end tag inside a comment, a CDATA
    /// section, an attribute value or a nested element of another
    /// namespace is no document's end, and an inner `<name>` is not the
    /// domain's.
    #[test]
    fn an_end_tag_inside_metadata_is_no_document_end() {
        let body = "  <metadata>\n    <x:a xmlns:x='urn:x' v='</domain>\n\n<domain>'>\n<![CDATA[\n</domain>\n\n]]><!--\n</domain>\n-->\n<x:domain><name>".to_owned()
            + B
            + "</name></x:domain>\n    </x:a>\n  </metadata>\n  <devices/>\n";
        let stream = doc(A, &body) + &doc(B, "");
        let documents = split_documents(&stream).unwrap();
        assert_eq!(documents.len(), 2, "{documents:?}");
        assert_eq!(documents[0].name.as_deref(), Some(A));
        assert!(documents[0].text.contains("<devices/>"));
        assert_eq!(documents[1].name.as_deref(), Some(B));
    }

    #[test]
    fn names_come_back_with_their_references_resolved() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(
            unescape("it&apos;s &quot;q&quot; &lt;&amp;&gt;"),
            "it's \"q\" <&>"
        );
        assert_eq!(
            unescape("&#233;&#xe9; &bogus; &#xzz; & x"),
            "éé &bogus; &#xzz; & x"
        );
    }

    #[test]
    fn anything_but_whole_documents_is_refused() {
        assert_eq!(split_documents("\n\n").unwrap(), []);
        let error = split_documents("error: not XML\n").unwrap_err();
        assert!(error.contains("outside any XML document"), "{error}");
        let cut = doc(A, "");
        let error = split_documents(&cut[..cut.len() - 5]).unwrap_err();
        assert_eq!(error, UNTERMINATED);
        assert!(split_documents("</domain>").is_err());
    }

    #[test]
    fn a_failed_command_is_none_and_a_stray_document_nobodys() {
        let (a, b, c) = (doc(A, ""), doc(B, ""), doc("0-stray", ""));
        // A's live read failed, its config read and B's did not; then a
        // document nobody asked for, before B's second.
        let stream = format!("{a}{b}{c}{b}");
        let documents = split_documents(&stream).unwrap();
        let aligned = align(&[A, A, B, B], &documents);
        assert_eq!(
            aligned,
            [
                Some(a.trim_end()),
                None,
                Some(b.trim_end()),
                Some(b.trim_end())
            ]
        );
        assert_eq!(align(&[A, B], &[]), [None, None]);
    }

    proptest::proptest! {
        /// Whichever commands fail, every document reaches its command
        /// and every failed command is `None`.
        #[test]
        fn each_answer_reaches_its_command(answered in proptest::collection::vec(proptest::bool::ANY, 0..12)) {
            let names: Vec<String> = (0..answered.len()).map(|n| format!("vm '{n}'")).collect();
            let texts: Vec<String> = names.iter().map(|name| doc(name, "")).collect();
            let stream: String = texts
                .iter()
                .zip(&answered)
                .filter(|(_, ok)| **ok)
                .map(|(text, _)| text.as_str())
                .collect();
            let documents = split_documents(&stream).unwrap();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let expected: Vec<Option<&str>> = texts
                .iter()
                .zip(&answered)
                .map(|(text, ok)| ok.then_some(text.trim_end()))
                .collect();
            proptest::prop_assert_eq!(align(&names, &documents), expected);
        }
    }
}
