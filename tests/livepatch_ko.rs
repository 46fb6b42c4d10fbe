//! Livepatch modules read as files (`lpstack::patchset::ko`): the real
//! source-built modules of the vmcore fixtures, a kernel sample built
//! against Debian's headers, and klp-build / kpatch-build shaped objects
//! built from our own C sources (tests/fixtures/livepatch-forms/).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;

use lpstack::kernel::btf::Btf;
use lpstack::patchset::ko::{KoError, LivepatchModule, ModuleForm, read_livepatch_module};

fn vmlinux_btf(release: &str) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&common::read(&format!("btf/vmlinux-{release}.btf.gz"))[..])
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

/// (object, old_name, sympos, new_symbol) of every function.
fn funcs(module: &LivepatchModule) -> Vec<(String, String, u32, Option<String>)> {
    module
        .funcs()
        .map(|(o, f)| (o.object_name().to_owned(), f.old_name.clone(), f.sympos, f.new_symbol.clone()))
        .collect()
}

#[test]
fn lpstack_lp_as_declared_in_its_source() {
    // scripts/vmcore/modules/lp/lpstack_lp.c: vmlinux cmdline_proc_show ->
    // lpstack_lp_cmdline_proc_show, lpstack_park park_here_a ->
    // lpstack_lp_park_here_a; no replace.
    for (release, _) in common::KERNELS {
        let btf_bytes = vmlinux_btf(release);
        let btf = Btf::parse(&btf_bytes).unwrap();
        let ko = common::read(&format!("vmcore/{release}/lpstack_lp.ko"));
        let module = read_livepatch_module(&ko, Some(&btf)).unwrap_or_else(|e| panic!("{release}: {e}"));
        assert_eq!(module.name, "lpstack_lp");
        assert_eq!(module.form, ModuleForm::SourceBuilt);
        assert_eq!(module.replace, Some(false));
        assert_eq!(
            funcs(&module),
            [
                ("vmlinux".into(), "cmdline_proc_show".into(), 0, Some("lpstack_lp_cmdline_proc_show".into())),
                ("lpstack_park".into(), "park_here_a".into(), 0, Some("lpstack_lp_park_here_a".into())),
            ],
            "{release}"
        );
        let names: Vec<Option<&str>> = module.objects.iter().map(|o| o.name.as_deref()).collect();
        assert_eq!(names, [None, Some("lpstack_park")]);
        // Without BTF the static klp_patch cannot be laid out.
        assert_eq!(read_livepatch_module(&ko, None), Err(KoError::NeedBtf { livepatch_tag: true }));
    }
}

fn fixture_module(path: &str, btf: Option<&Btf<'_>>) -> Result<LivepatchModule, KoError> {
    read_livepatch_module(&common::read(&format!("livepatch/{path}")), btf)
}

type Expected<'a> = &'a [(&'a str, &'a str, u32, Option<&'a str>)];

fn assert_funcs(module: &LivepatchModule, expected: Expected<'_>) {
    let expected: Vec<(String, String, u32, Option<String>)> =
        expected.iter().map(|&(o, f, s, n)| (o.to_owned(), f.to_owned(), s, n.map(str::to_owned))).collect();
    assert_eq!(funcs(module), expected, "{}", module.name);
}

#[test]
fn kernel_samples_built_against_debian_headers() {
    // samples/livepatch/*.c of Debian's linux-source-6.12 6.12.117-1~deb12u1
    // (tests/fixtures/livepatch/build-fixtures.sh), read with the BTF of the
    // kernel they were built for.
    let btf_bytes = vmlinux_btf("6.12.117+deb12-amd64");
    let btf = Btf::parse(&btf_bytes).unwrap();
    let sample = fixture_module("samples/livepatch-sample.ko", Some(&btf)).unwrap();
    assert_eq!(
        (sample.name.as_str(), sample.form, sample.replace),
        ("livepatch_sample", ModuleForm::SourceBuilt, Some(false))
    );
    assert_funcs(&sample, &[("vmlinux", "cmdline_proc_show", 0, Some("livepatch_cmdline_proc_show"))]);

    // Three objects, two with an empty funcs array (callbacks only).
    let demo = fixture_module("samples/livepatch-callbacks-demo.ko", Some(&btf)).unwrap();
    assert_eq!(demo.name, "livepatch_callbacks_demo");
    let objects: Vec<(Option<&str>, usize)> = demo.objects.iter().map(|o| (o.name.as_deref(), o.funcs.len())).collect();
    assert_eq!(objects, [(None, 0), (Some("livepatch_callbacks_mod"), 0), (Some("livepatch_callbacks_busymod"), 1)]);
    assert_funcs(&demo, &[("livepatch_callbacks_busymod", "busymod_work_func", 0, Some("patched_work_func"))]);

    let fix1 = fixture_module("samples/livepatch-shadow-fix1.ko", Some(&btf)).unwrap();
    assert_eq!(fix1.name, "livepatch_shadow_fix1");
    assert_funcs(
        &fix1,
        &[
            ("livepatch_shadow_mod", "dummy_alloc", 0, Some("livepatch_fix1_dummy_alloc")),
            ("livepatch_shadow_mod", "dummy_free", 0, Some("livepatch_fix1_dummy_free")),
        ],
    );
    // The same layout in 6.1's BTF: the sample reads the same there.
    let btf61_bytes = vmlinux_btf("6.1.0-57-amd64");
    let btf61 = Btf::parse(&btf61_bytes).unwrap();
    assert_eq!(fixture_module("samples/livepatch-sample.ko", Some(&btf61)).unwrap(), sample);
}

#[test]
fn source_built_replace_and_ambiguity() {
    let btf_bytes = vmlinux_btf("6.12.117+deb12-amd64");
    let btf = Btf::parse(&btf_bytes).unwrap();
    // forms/lp_replace.c
    let module = fixture_module("forms/lp_replace.ko", Some(&btf)).unwrap();
    assert_eq!(
        (module.name.as_str(), module.form, module.replace),
        ("lp_replace", ModuleForm::SourceBuilt, Some(true))
    );
    assert_funcs(
        &module,
        &[
            ("vmlinux", "cmdline_proc_show", 0, Some("lp_replace_show")),
            ("vmlinux", "show_val", 2, Some("lp_replace_show_val")),
            ("ext4", "ext4_readdir", 0, Some("lp_replace_readdir")),
        ],
    );
    let specs = module.func_specs();
    assert_eq!(
        specs.iter().map(|s| (s.object.as_str(), s.function.as_str(), s.sympos, s.line)).collect::<Vec<_>>(),
        [("vmlinux", "cmdline_proc_show", 0, 1), ("vmlinux", "show_val", 2, 2), ("ext4", "ext4_readdir", 0, 3)]
    );
    // forms/lp_two_patches.c: two static klp_patch, named by their symbols.
    let error = fixture_module("forms/lp_two_patches.ko", Some(&btf)).unwrap_err();
    let KoError::AmbiguousPatch { candidates } = &error else { panic!("{error}") };
    assert_eq!(candidates.len(), 2, "{error}");
    assert!(candidates[0].starts_with("`patch_") && candidates[1].starts_with("`patch_"), "{error}");
}

#[test]
fn klp_build_form() {
    // forms/klp_build.c: include/linux/livepatch_external.h of torvalds/linux
    // 5add3c3c280a35f7e258e9cef7607db5a2e56fdc (v6.19), in .init.klp_objects
    // / .init.klp_funcs (tip b525fcaf0a76) and, -DOLD_NAMES, in
    // __klp_objects / __klp_funcs with the name only in struct module.
    let expected: Expected<'_> = &[
        ("vmlinux", "cmdline_proc_show", 0, Some("klp_new_cmdline_proc_show")),
        ("vmlinux", "show_val", 2, Some("new_show_val")),
        ("ext4", "ext4_readdir", 0, Some("new_ext4_readdir")),
        ("xfs", "xfs_file_fsync", 3, Some("new_xfs_fsync")),
    ];
    let btf_bytes = vmlinux_btf("6.12.117+deb12-amd64");
    let btf = Btf::parse(&btf_bytes).unwrap();
    for (file, name) in [("forms/klp_build.o", "livepatch_fix"), ("forms/klp_build_old_names.o", "livepatch_old_names")]
    {
        for btf in [None, Some(&btf)] {
            let module = fixture_module(file, btf).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!((module.name.as_str(), module.form, module.replace), (name, ModuleForm::KlpBuild, None));
            assert_funcs(&module, expected);
            assert_eq!(module.objects[0].name, None);
        }
    }
}

#[test]
fn kpatch_build_form() {
    // forms/kpatch_build.c: kmod/patch/kpatch-patch.h of dynup/kpatch
    // 7085e9dfc969ac8ba7dcaccda26ca2c2e71a313d. Records interleave objnames;
    // the objects come out grouped, in order of first appearance.
    let module = fixture_module("forms/kpatch_build.o", None).unwrap();
    assert_eq!((module.name.as_str(), module.form, module.replace), ("kpatch_fix", ModuleForm::KpatchBuild, None));
    assert_funcs(
        &module,
        &[
            ("vmlinux", "cmdline_proc_show", 0, Some("cmdline_proc_show")),
            ("vmlinux", "show_val", 2, Some("show_val")),
            ("ext4", "ext4_readdir", 0, Some("ext4_readdir")),
            ("nfs", "nfs_open", 1, Some("nfs_open")),
        ],
    );
    let new = module.replacement_specs().unwrap();
    assert!(new.iter().all(|s| s.object == "kpatch_fix"));
}

#[test]
fn not_livepatch_modules() {
    // lpstack_park.ko is an ordinary module.
    let btf_bytes = vmlinux_btf("6.12.117+deb12-amd64");
    let btf = Btf::parse(&btf_bytes).unwrap();
    let park = common::read("vmcore/6.12.117+deb12-amd64/lpstack_park.ko");
    assert_eq!(read_livepatch_module(&park, Some(&btf)), Err(KoError::NotLivepatch));
    assert_eq!(read_livepatch_module(&park, None), Err(KoError::NeedBtf { livepatch_tag: false }));
}
