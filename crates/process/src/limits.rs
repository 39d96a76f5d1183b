//! What the operating system allows this process: how many files it may
//! open and how much CPU it gets when others want it too.

use tracing::warn;

/// Lets the process use as many files as its hard limit allows.
pub fn raise_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Gives this thread, and every thread it starts from now on, a niceness
/// of at least `nice` (Linux keeps the niceness per thread and hands it
/// down to new threads, so call it before any thread starts to cover the
/// whole process). Raising it needs no privilege; a failure is logged and
/// otherwise ignored.
pub fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls about this thread. (getpriority's -1 may be
    // an error or the niceness -1: either way below `nice`, so it is set.)
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS as _, 0) >= nice {
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) != 0 {
            warn!(nice, error = %std::io::Error::last_os_error(), "could not lower the priority");
        }
    }
}
