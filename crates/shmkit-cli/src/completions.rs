//! `shmkit completions SHELL` and `shmkit man`: shell completions
//! (clap_complete) and manual pages (clap_mangen), generated from the same
//! definitions as the parser, so they never disagree with it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write shmkit.1 and one page per verb (shmkit-ls.1, ...) into this
    /// directory; without it, print shmkit.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(out: &mut dyn Write, args: &CompletionArgs) -> Result<u8> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "shmkit", out);
    Ok(0)
}

fn render(cmd: &clap::Command, out: &mut dyn Write) -> Result<()> {
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    Ok(())
}

pub fn man(out: &mut dyn Write, args: &ManArgs) -> Result<u8> {
    let mut cmd = crate::Cli::command();
    cmd.build();
    let Some(dir) = &args.dir else {
        render(&cmd, out)?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |path: &Path, cmd: &clap::Command| -> Result<()> {
        let mut buf = Vec::new();
        render(cmd, &mut buf)?;
        std::fs::write(path, buf).with_context(|| format!("cannot write {}", path.display()))
    };
    write(&dir.join("shmkit.1"), &cmd)?;
    let mut written = 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // A verb's page is named as `man shmkit-ls` finds it.
        let name = format!("shmkit-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        write(&dir.join(format!("{name}.1")), &page)?;
        written += 1;
    }
    writeln!(out, "wrote {written} pages to {}", dir.display())?;
    Ok(0)
}
