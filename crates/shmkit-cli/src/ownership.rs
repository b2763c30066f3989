//! `chmod` and `chown` for POSIX objects (`fchmod`, `fchown`) and System V
//! segments (`shmctl(IPC_SET)`).

use anyhow::Result;
use shmkit::inventory::{gid_of, login_group_of, uid_of};
use shmkit::posix::PosixObject;
use shmkit::{Error, ErrorKind};

use crate::target::Target;

pub fn chmod(text: &str, mode: u32) -> Result<u8> {
    let target = Target::parse(text)?;
    match (target.segment()?, &target) {
        (Some(seg), _) => seg.set_mode(mode)?,
        (None, Target::Posix(name)) => PosixObject::open_read_only(name)?.set_mode(mode)?,
        (None, _) => unreachable!("a System V target names a segment or fails"),
    }
    Ok(0)
}

pub fn chown(text: &str, owner: &str) -> Result<u8> {
    let target = Target::parse(text)?;
    let (uid, gid) = parse_owner(owner)
        .map_err(|why| Error::new(ErrorKind::InvalidArgument, "chown", text, why))?;
    match (target.segment()?, &target) {
        (Some(seg), _) => seg.set_owner(uid, gid)?,
        (None, Target::Posix(name)) => PosixObject::open_read_only(name)?.set_owner(uid, gid)?,
        (None, _) => unreachable!("a System V target names a segment or fails"),
    }
    Ok(0)
}

/// Reads an owner the way chown(1) does: `USER`, `USER:GROUP`, `:GROUP`,
/// or `USER:` (the user's login group); names or numbers. `None` leaves
/// that id as it is.
fn parse_owner(spec: &str) -> std::result::Result<(Option<u32>, Option<u32>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let uid = match user {
        "" => None,
        name => Some(uid_of(name).ok_or_else(|| format!("unknown user {name:?}"))?),
    };
    let gid = match (group, uid) {
        (None, _) | (Some(""), None) => None,
        (Some(""), Some(uid)) => Some(login_group_of(uid).ok_or_else(|| {
            format!("user {user:?} has no entry in the user database, so no login group")
        })?),
        (Some(name), _) => Some(gid_of(name).ok_or_else(|| format!("unknown group {name:?}"))?),
    };
    // chown(2) reads (uid_t)-1 as "leave this id unchanged": accepting it
    // would report success and change nothing.
    if uid == Some(u32::MAX) || gid == Some(u32::MAX) {
        return Err(format!(
            "{} is (uid_t)-1, which chown(2) reads as \"leave unchanged\", not an id",
            u32::MAX
        ));
    }
    if uid.is_none() && gid.is_none() {
        return Err(format!(
            "{spec:?} changes nothing: write USER, USER:GROUP, USER: or :GROUP"
        ));
    }
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_as_chown_reads_them() {
        assert_eq!(parse_owner("root"), Ok((Some(0), None)));
        assert_eq!(parse_owner("1234"), Ok((Some(1234), None)));
        assert_eq!(parse_owner("1234:5678"), Ok((Some(1234), Some(5678))));
        assert_eq!(parse_owner(":5678"), Ok((None, Some(5678))));
        assert_eq!(parse_owner("root:"), Ok((Some(0), Some(0))));
        assert_eq!(parse_owner("0:root"), Ok((Some(0), Some(0))));
        assert!(parse_owner("").unwrap_err().contains("changes nothing"));
        assert!(parse_owner("4294967295").unwrap_err().contains("(uid_t)-1"));
        assert!(parse_owner(":4294967295")
            .unwrap_err()
            .contains("(uid_t)-1"));
        assert!(parse_owner(":").unwrap_err().contains("changes nothing"));
        assert!(parse_owner("no-such-user-shmkit")
            .unwrap_err()
            .contains("unknown user"));
        assert!(parse_owner("root:no-such-group-shmkit")
            .unwrap_err()
            .contains("unknown group"));
    }
}
