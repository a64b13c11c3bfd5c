"""A real full disk (a small tmpfs) during an export: a clear error, the previous export kept, nothing partial."""

from chatforge.export.run import manifest


def test_export_onto_a_full_disk_keeps_the_previous_export(run_cli, lora_run, small_disk):
    disk = small_disk(24)  # room for one tiny export (~16 MB), not for a second one beside it
    out = disk / "lumora"
    code, _, err = run_cli("export", lora_run, "--out", out)
    assert code == 0, err
    before = {p.name: p.stat().st_size for p in out.iterdir()}
    code, stdout, err = run_cli("export", lora_run, "--out", out, "--force")
    assert code == 1, stdout + err
    assert "the disk is full" in err and "previous export" in err, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert {p.name: p.stat().st_size for p in out.iterdir()} == before and manifest(out)
    assert sorted(p.name for p in disk.iterdir()) == ["lumora"]  # no partial directory left behind
