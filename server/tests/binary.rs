//! The real `sichatd` binary: help and configuration errors.

use std::process::{Command, Output};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_command_has_help() {
    let cmds: &[&[&str]] = &[
        &[],
        &["serve"],
        &["admin"],
        &["admin", "invite"],
        &["admin", "users"],
        &["admin", "remove"],
        &["admin", "backup"],
    ];
    for cmd in cmds {
        let out = Command::new(env!("CARGO_BIN_EXE_sichatd")).args(*cmd).arg("--help").output().expect("run");
        assert!(out.status.success() && stdout(&out).contains("Usage"), "sichatd {cmd:?} --help");
    }
}

#[test]
fn configuration_errors_are_clear() {
    let dir = std::env::temp_dir().join(format!("sichatd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sichat.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\npublic_ulr = \"https://typo.example\"\n").expect("write");
    let out =
        Command::new(env!("CARGO_BIN_EXE_sichatd")).arg("--config").arg(&file).arg("serve").output().expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("public_ulr"), "{}", stderr(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_sichatd"))
        .args(["--config", "/nonexistent.toml", "serve"])
        .output()
        .expect("run");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_sichatd"))
        .args(["--data-dir"])
        .arg(dir.join("d"))
        .args(["--database-url", "mysql://nope", "serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(stderr(&out).contains("sqlite:// or postgres://"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
