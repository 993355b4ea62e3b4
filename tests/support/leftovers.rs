//! What a lab run left behind: every lab name embeds `-<pid>-` of the
//! process that made it.

use std::process::Command;

/// Namespaces, pinned objects and `vlt-` processes whose names embed
/// `-<pid>-` (everything the lab run with process id `pid` created).
pub fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("-{pid}-");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut found: Vec<String> = String::from_utf8_lossy(&netns.stdout)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(|l| format!("netns {l}"))
        .collect();
    if let Ok(pins) = std::fs::read_dir("/sys/fs/bpf/vlnet") {
        found.extend(
            pins.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&tag))
                .map(|n| format!("pins {n}")),
        );
    }
    // `--`: the pattern starts with a dash.
    let procs = Command::new("pgrep")
        .args(["-af", "--", &tag])
        .output()
        .unwrap();
    found.extend(
        String::from_utf8_lossy(&procs.stdout)
            .lines()
            .filter(|l| l.contains("vlt-"))
            .map(|l| format!("process {l}")),
    );
    found
}
