//! Property tests of every parser of virsh and guest-agent output: fed any
//! text they answer without panicking, and what virsh really prints (any
//! names, any values) parses back to what was printed.

use proptest::prelude::*;

use super::batch::Batch;
use super::parse::{
    parse_cpu_seconds, parse_dominfo, parse_domstats, parse_guestinfo, parse_uuid_names,
};
use super::{domxml, metadata, volumes};
use crate::agent;

/// Text that looks enough like virsh output to reach the parsers' inner
/// branches: lines of headers, `key=value`, `Key: value`, quotes, XML.
fn virshish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        "Domain: '[^\n]{0,20}'?",
        "  [a-z.]{0,12}=[^\n]{0,12}",
        "[A-Za-z ()]{0,12}: [^\n]{0,20}",
        "[0-9a-f-]{36} [^\n]{0,20}",
        "<[a-z:]{1,8}( [a-z]{1,4}='[^'\n]{0,8}')*/?>",
        "\\{\"return\":[^\n]{0,30}",
        "[^\n]{0,40}",
    ];
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// A domain name as libvirt allows it (no newline, no NUL), quotes and all.
fn domain_name() -> impl Strategy<Value = String> {
    "[^\n\u{0}]{1,24}".prop_filter("not only blanks", |name| !name.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Error texts with URIs anywhere in them: scrubbing never panics and
    /// leaves no user info behind, a `://` next to a URI included.
    #[test]
    fn scrubbed_errors_hold_no_user_info(
        before in "(://|[^@]){0,12}",
        scheme in "[a-z+.é-]{0,6}",
        after in "(://|[^@]){0,12}",
    ) {
        let text = format!("{before}{scheme}://root@host/x?keyfile=/k{after}");
        let scrubbed = super::Uri::parse("qemu+ssh://root@host/x?keyfile=/k").scrub(&text);
        // `<keyfile>` is the placeholder; the parameter itself must go.
        prop_assert!(!scrubbed.contains("root@") && !scrubbed.contains("keyfile="), "{}", scrubbed);
    }

    #[test]
    fn parsers_never_panic(text in virshish()) {
        let _ = parse_domstats(&text);
        let _ = parse_uuid_names(&text);
        let _ = parse_dominfo(&text);
        let _ = parse_guestinfo(&text);
        let _ = parse_cpu_seconds(&text);
        let _ = volumes::parse_vol_list_paths(&text);
        let _ = domxml::parse_domain_xml(&text);
        let _ = metadata::libosinfo_os_id(&text);
        let _ = agent::parse_handle(&text);
        let _ = agent::parse_file_read(&text);
        let _ = agent::pretty_name_from_os_release(&text);
    }

    #[test]
    fn parsers_never_panic_on_any_unicode(text in "\\PC{0,200}") {
        let _ = parse_domstats(&text);
        let _ = parse_uuid_names(&text);
        let _ = parse_dominfo(&text);
        let _ = parse_guestinfo(&text);
        let _ = domxml::parse_domain_xml(&text);
        let _ = agent::parse_file_read(&text);
        let _ = agent::pretty_name_from_os_release(&text);
    }

    /// `domstats --raw` of any names and values reads back exactly.
    #[test]
    fn domstats_round_trips(
        domains in prop::collection::vec(
            (domain_name(), prop::collection::btree_map("[a-z]{1,6}\\.[a-z]{1,6}", "[0-9]{1,12}", 0..5)),
            0..8,
        )
    ) {
        let text: String = domains
            .iter()
            .map(|(name, fields)| {
                let fields: String = fields.iter().map(|(k, v)| format!("  {k}={v}\n")).collect();
                format!("Domain: '{name}'\n{fields}\n")
            })
            .collect();
        let parsed = parse_domstats(&text);
        prop_assert_eq!(parsed.len(), domains.len());
        for (stats, (name, fields)) in parsed.iter().zip(&domains) {
            prop_assert_eq!(&stats.name, name);
            prop_assert_eq!(&stats.fields, fields);
        }
    }

    /// `list --all --uuid --name` of any names reads back exactly.
    #[test]
    fn uuid_names_round_trip(names in prop::collection::btree_set(domain_name(), 0..8)) {
        let listed: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(n, name)| (format!("00000000-0000-4000-8000-{n:012}"), name.clone()))
            .collect();
        let text: String = listed.iter().map(|(uuid, name)| format!("{uuid} {name}\n")).collect();
        let parsed = parse_uuid_names(&text);
        for (uuid, name) in &listed {
            prop_assert_eq!(parsed.get(name), Some(uuid));
        }
    }

    /// Each command's output comes back from its section whatever it
    /// holds, forged marker lines of other nonces included.
    #[test]
    fn batch_sections_are_what_each_command_printed(
        outputs in prop::collection::vec(
            prop::collection::vec(
                prop_oneof!["[^\n]{0,30}", "@@dismount-iso-qemu-[0-9a-f]{32}-[0-9]"],
                0..4,
            ),
            1..6,
        )
    ) {
        let mut batch = Batch::new();
        for n in 0..outputs.len() {
            batch.push(&["dominfo", "--domain", &format!("vm{n}")]);
        }
        let piece = batch.pieces().remove(0);
        let printed: Vec<String> = outputs
            .iter()
            .map(|lines| lines.iter().map(|line| format!("{line}\n")).collect())
            .collect();
        let mut stdout = String::new();
        for (command, output) in piece.commands.chunks(2).zip(&printed) {
            stdout.push_str(output);
            stdout.push_str(&command[1][1]);
            stdout.push('\n');
        }
        let sections = batch.split(piece.range, &stdout);
        prop_assert_eq!(sections.len(), printed.len());
        for (section, output) in sections.iter().zip(&printed) {
            prop_assert_eq!(*section, Some(output.as_str()));
        }
    }
}
