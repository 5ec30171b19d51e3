//! The commands, as library functions returning reports; `src/cli/` prints them.

pub mod backup;
pub mod drill;
pub mod dump;
pub mod health;
pub mod http;
pub mod import;
pub mod interrupt;
pub mod jobs;
pub mod lag;
pub mod losses;
pub mod metrics;
pub mod rebuild;
pub mod recover;
pub mod restore;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod sla;
pub mod status;
pub mod sync;
pub mod verify;
