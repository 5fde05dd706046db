//! Pure parser for `virsh vol-list --pool P`: the volumes' paths.

/// The Path column of `vol-list`. virsh 9.0 has no `--name` for vol-list
/// and pads its columns, so a blank cannot separate name from path; but a
/// volume name never holds a `/` (it is a file name within the pool), so a
/// row's path starts at its first `/`. Rows without one (network pools
/// name volumes `pool/vol`-style with no leading slash) are left out.
pub fn parse_vol_list_paths(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.starts_with("---"))
        .skip(1)
        .filter_map(|line| line.find('/').map(|at| line[at..].trim_end().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_spaces_and_non_ascii() {
        let text = crate::testing::fixture("virsh/vol-list-lab-isos.txt");
        assert_eq!(
            parse_vol_list_paths(&text),
            [
                "/work/main/.lab/isos/Débian netinst.iso",
                "/work/main/.lab/isos/install-a.iso",
                "/work/main/.lab/isos/tools-b.iso",
            ]
        );
        assert!(parse_vol_list_paths("").is_empty());
        assert!(parse_vol_list_paths("error: no pool\n").is_empty());
    }
}
