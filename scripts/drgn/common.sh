# Shared by scripts/drgn/*.sh (sourced).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
LPSTACK="${LPSTACK:-$ROOT/target/release/lpstack}"

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

need_drgn() {
    python3 -c 'import drgn' 2>/dev/null || {
        log "installing drgn from PyPI"
        pip install drgn >&2 || pip install --break-system-packages drgn >&2
    }
    python3 -c 'import drgn' || die "drgn does not import"
}

need_lpstack() {
    if [ -z "${LPSTACK_NO_BUILD:-}" ]; then
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build failed"
    fi
    [ -x "$LPSTACK" ] || die "no $LPSTACK"
    # Work on a snapshot: target/ is shared, and a rebuild in the middle of
    # a run must not swap the binary between two measurements.
    LPSTACK_SRC="$LPSTACK"
    LPSTACK_SHA="$(sha256sum "$LPSTACK" | cut -c1-12)"
    LPSTACK_BUILT="$(date -u -r "$LPSTACK" +%Y-%m-%dT%H:%M:%SZ)"
    mkdir -p "$WORK/drgn/bin"
    [ -x "$WORK/drgn/bin/lpstack-$LPSTACK_SHA" ] \
        || cp "$LPSTACK" "$WORK/drgn/bin/lpstack-$LPSTACK_SHA"
    LPSTACK="$WORK/drgn/bin/lpstack-$LPSTACK_SHA"
}

# One line naming the lpstack binary used.
lpstack_version() {
    local head dirty=""
    head="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    git -C "$ROOT" diff --quiet -- src Cargo.toml Cargo.lock 2>/dev/null || dirty="+uncommitted src changes"
    printf '%s (binary sha256 %s, built %s; tree at %s%s)\n' \
        "$("$LPSTACK" --version)" "$LPSTACK_SHA" "$LPSTACK_BUILT" "$head" "${dirty:+ $dirty}"
}

drgn_version() { python3 -c 'import drgn; print(drgn.__version__)'; }

# vmlinux_for RELEASE: print the path of the DWARF vmlinux for RELEASE,
# extracting it from the Debian -dbg .deb in $WORK/debs if needed.
vmlinux_for() {
    local rel="$1" dbg="$WORK/dbg" v deb
    v="$dbg/usr/lib/debug/boot/vmlinux-$rel"
    if [ ! -s "$v" ]; then
        deb=$(ls "$WORK"/debs/linux-image-"$rel"-dbg_*.deb 2>/dev/null | head -n1)
        [ -n "$deb" ] || die "no $v and no $WORK/debs/linux-image-$rel-dbg_*.deb"
        log "extracting vmlinux-$rel from $(basename "$deb")"
        mkdir -p "$dbg"
        dpkg-deb --fsys-tarfile "$deb" \
            | tar -x -C "$dbg" --wildcards "./usr/lib/debug/boot/vmlinux-$rel" \
            || die "extracting vmlinux from $deb"
    fi
    printf '%s\n' "$v"
}

# A --set file for lpstack: frames do not depend on it, only verdicts.
default_set() {
    local f="$1"
    printf 'cmdline_proc_show\n' >"$f"
}

# release_of DUMP: the kernel release from the dump's VMCOREINFO (OSRELEASE=).
release_of() {
    LC_ALL=C grep -a -m1 -o 'OSRELEASE=[^[:space:]]*' "$1" | head -n1 | cut -d= -f2
}
