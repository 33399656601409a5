//! `remoteproxy-packaging DIR`: writes the package's man pages (`remoteproxy.8`,
//! `remoteproxy-client.1`, `remoteproxy-monitor.1`) and bash, zsh and fish completions into DIR,
//! from the clap definitions the binaries parse, so the documentation never drifts from the
//! flags. `packaging/build-deb.sh` runs it before `cargo deb`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_complete::Shell;

/// Each binary's command line and its man page section.
fn commands() -> [(Command, &'static str); 3] {
    [
        (remoteproxy::cli::Cli::command(), "8"),
        (remoteproxy_client::args::Cli::command(), "1"),
        (remoteproxy_monitor::args::Args::command(), "1"),
    ]
}

/// Writes everything into `dir`: `man/<name>.<section>`, `completions/<name>.bash`,
/// `completions/_<name>` (zsh) and `completions/<name>.fish`.
fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    for (command, section) in commands() {
        let name = command.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).section(section).render(&mut page)?;
        let path = man.join(format!("{name}.{section}"));
        std::fs::write(&path, page)?;
        written.push(path);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = clap_complete::generate_to(shell, &mut command.clone(), &name, &completions)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: remoteproxy-packaging DIR (writes the man pages and completions into DIR)");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("remoteproxy-packaging: cannot write into {}: {error}", Path::new(&dir).display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page and completion file is written, and each page documents its binary's flags.
    #[test]
    fn pages_and_completions_name_every_flag() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        assert_eq!(written.len(), 12);
        let page = |name| std::fs::read_to_string(dir.path().join("man").join(name)).unwrap();
        let broker = page("remoteproxy.8");
        for flag in [
            "\\-\\-configuration",
            "\\-\\-check\\-config",
            "\\-\\-print\\-config",
            "\\-\\-mock\\-authenticator",
        ] {
            assert!(broker.contains(flag), "remoteproxy.8 lacks {flag}");
        }
        assert!(broker.contains(".TH remoteproxy 8"), "{}", &broker[..200]);
        assert!(page("remoteproxy-client.1").contains("tunnel\\-server"));
        assert!(page("remoteproxy-monitor.1").contains(".TH remoteproxy-monitor 1"));
        let bash = std::fs::read_to_string(dir.path().join("completions/remoteproxy.bash")).unwrap();
        assert!(bash.contains("--check-config"));
        assert!(dir.path().join("completions/_remoteproxy-client").exists());
        assert!(dir.path().join("completions/remoteproxy-monitor.fish").exists());
    }
}
