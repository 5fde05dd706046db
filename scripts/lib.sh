# shellcheck shell=bash
# scripts/lib.sh — helpers shared by the project's bash scripts (scripts/lab,
# benches/qemu-fleet). Sourced, never run; defines functions only.

# Text for an XML attribute or element. Every replacement is quoted: bash
# 5.2 (patsub_replacement, on by default) turns an unquoted & in the
# replacement into the matched text, so ${s//</&lt;} gave "<lt;".
xml_escape() {
    local s=$1
    s=${s//&/"&amp;"}; s=${s//</"&lt;"}; s=${s//>/"&gt;"}
    s=${s//\'/"&apos;"}; s=${s//\"/"&quot;"}
    printf '%s' "$s"
}

# Single-quoted for the shell's `eval` and for virsh's tokenizer (which
# quotes like the shell: '…' is literal, '\'' a quote). Spaces and
# non-ASCII letters survive, which printf %q would turn into $'\303\251'
# under some locales.
shell_quote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

# The target directory of storage pool POOL on URI; empty when there is no
# such pool (which is no error).
pool_path() { # URI POOL
    timeout 30 virsh -q -c "$1" pool-dumpxml --pool "$2" 2>/dev/null |
        sed -n '/<target>/,/<\/target>/s|.*<path>\(.*\)</path>.*|\1|p' || true
}
