//! Many `dumpxml` outputs in one stream, told apart without a marker after
//! each command: every output is one XML document, which ends where its
//! root element closes (comments, CDATA sections and quoted attribute
//! values are skipped, so no text inside them can end it early), and each
//! document names its domain by the `<uuid>` it holds. A command that
//! failed printed nothing (its error went to stderr): the next document
//! then holds another domain's UUID. Pure functions over `&str`.

use std::collections::HashMap;

/// One XML document of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    pub text: &'a str,
    /// The text of the root's `<uuid>` child, where it has one.
    pub uuid: Option<&'a str>,
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
    let mut uuid = None;
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
            if depth == 2 && uuid.is_none() && tag_name(tag) == "uuid" {
                uuid = text[end..].find('<').map(|len| text[end..end + len].trim());
            }
        }
        at = end;
        if depth == 0 {
            return Ok(Document {
                text: &text[start..end],
                uuid,
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

fn tag_name(tag: &str) -> &str {
    let end = tag
        .find(|c: char| c.is_ascii_whitespace() || c == '/')
        .unwrap_or(tag.len());
    &tag[..end]
}

/// Lines the documents up with the commands that asked for them, in
/// order; `uuids[n]` is the UUID of command `n`'s domain. A command is
/// `None` when the next document is another domain's: it failed. A
/// document no command still waiting asks for (a name that looked up
/// another domain) is nobody's. Of two reads of one domain (live, then
/// config), a lone document goes to the first: a domain that went away
/// fails the second.
pub fn align<'a>(uuids: &[&str], documents: &[Document<'a>]) -> Vec<Option<&'a str>> {
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    for uuid in uuids {
        *waiting.entry(uuid).or_default() += 1;
    }
    let mut at = 0;
    let mut aligned = Vec::with_capacity(uuids.len());
    for uuid in uuids {
        let asked = |document: &Document| {
            document
                .uuid
                .is_some_and(|u| waiting.get(u).is_some_and(|n| *n > 0))
        };
        while documents.get(at).is_some_and(|d| !asked(d)) {
            at += 1;
        }
        *waiting.get_mut(uuid).expect("counted above") -= 1;
        let answer = documents.get(at).filter(|d| d.uuid == Some(*uuid));
        at += usize::from(answer.is_some());
        aligned.push(answer.map(|d| d.text));
    }
    aligned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";

    fn doc(uuid: &str, body: &str) -> String {
        format!(
            "<domain type='qemu'>\n  <name>x</name>\n  <uuid>{uuid}</uuid>\n{body}</domain>\n\n"
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
        assert_eq!(
            documents[0].uuid,
            Some("4c61622d-0000-4000-8000-000000000001")
        );
        assert_eq!(
            documents[1].uuid,
            Some("4c61622d-0000-4000-8000-000000000005")
        );
    }

    /// Metadata is the definer's XML: an end tag inside a comment, a CDATA
    /// section, an attribute value or a nested element of another
    /// namespace is no document's end, and an inner `<uuid>` is not the
    /// domain's.
    #[test]
    fn an_end_tag_inside_metadata_is_no_document_end() {
        let body = "  <metadata>\n    <x:a xmlns:x='urn:x' v='</domain>\n\n<domain>'>\n<![CDATA[\n</domain>\n\n]]><!--\n</domain>\n-->\n<x:domain><x:uuid>".to_owned()
            + B
            + "</x:uuid></x:domain>\n    </x:a>\n  </metadata>\n  <devices/>\n";
        let stream = doc(A, &body) + &doc(B, "");
        let documents = split_documents(&stream).unwrap();
        assert_eq!(documents.len(), 2, "{documents:?}");
        assert_eq!(documents[0].uuid, Some(A));
        assert!(documents[0].text.contains("<devices/>"));
        assert_eq!(documents[1].uuid, Some(B));
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
            let uuids: Vec<String> = (0..answered.len()).map(|n| format!("uuid-{n}")).collect();
            let texts: Vec<String> = uuids.iter().map(|uuid| doc(uuid, "")).collect();
            let stream: String = texts
                .iter()
                .zip(&answered)
                .filter(|(_, ok)| **ok)
                .map(|(text, _)| text.as_str())
                .collect();
            let documents = split_documents(&stream).unwrap();
            let uuids: Vec<&str> = uuids.iter().map(String::as_str).collect();
            let expected: Vec<Option<&str>> = texts
                .iter()
                .zip(&answered)
                .map(|(text, ok)| ok.then_some(text.trim_end()))
                .collect();
            proptest::prop_assert_eq!(align(&uuids, &documents), expected);
        }
    }
}
