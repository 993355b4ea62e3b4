//! Files generated from the command line for packages: shell completions
//! (bash, zsh, fish; `clap_complete`) and man pages (`clap_mangen`), one
//! page per visible command (`vlnet.1`, `vlnet-ctl.1`, `vlnet-ctl-status.1`,
//! …). `vlnet generate-assets DIR` writes them; `deploy/deb/build.sh` ships
//! them in the .deb.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Where each shell's completion file goes under `DIR/completions/`.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "vlnet"),
    (Shell::Zsh, "_vlnet"),
    (Shell::Fish, "vlnet.fish"),
];

/// Writes `dir/completions/{vlnet,_vlnet,vlnet.fish}` and
/// `dir/man/vlnet*.1`; returns how many man pages.
pub fn generate(dir: &Path) -> Result<usize> {
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, file) in SHELLS {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "vlnet", &mut out);
        let path = completions.join(file);
        fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    let man = dir.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    pages(&cmd, "vlnet", &man)
}

/// Writes the page of `cmd` (named `name`) and of its visible subcommands.
fn pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<usize> {
    let page = cmd.clone().name(name.to_owned());
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        written += pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_a_page_per_visible_command() {
        let dir = std::env::temp_dir().join(format!("vlnet-assets-{}", std::process::id()));
        let pages = generate(&dir).unwrap();
        let bash = fs::read_to_string(dir.join("completions/vlnet")).unwrap();
        assert!(
            bash.contains("leave") && bash.contains("--uses"),
            "ctl commands"
        );
        let zsh = fs::read_to_string(dir.join("completions/_vlnet")).unwrap();
        assert!(zsh.starts_with("#compdef vlnet"), "{zsh:.80}");
        assert!(dir.join("completions/vlnet.fish").exists());
        let ctl = fs::read_to_string(dir.join("man/vlnet-ctl-client-add.1")).unwrap();
        assert!(ctl.contains(".TH vlnet-ctl-client-add 1"), "{ctl:.200}");
        assert!(ctl.contains("\\-\\-uses"), "{ctl}");
        assert!(!dir.join("man/vlnet-wireguard-device.1").exists());
        assert!(!dir.join("man/vlnet-help.1").exists());
        let count = fs::read_dir(dir.join("man")).unwrap().count();
        assert_eq!(pages, count);
        assert!(pages > 20, "{pages}");
        fs::remove_dir_all(dir).unwrap();
    }
}
