//! The agent stays small: it links no web server, database driver or template engine.

use std::process::Command;

#[test]
fn agent_dependency_tree_has_no_server_database_or_templates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "rounds-agent",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(
        crates.contains(&"reqwest"),
        "sanity: the tree lists the agent's dependencies"
    );
    for banned in [
        "axum",
        "axum-server",
        "hyper-server",
        "rusqlite",
        "libsqlite3-sys",
        "sqlx",
        "tokio-postgres",
        "postgres",
        "askama",
        "maud",
        "tera",
        "handlebars",
        "rounds-collector",
        "argon2",
        "rcgen",
    ] {
        assert!(!crates.contains(&banned), "the agent links {banned}");
    }
}
