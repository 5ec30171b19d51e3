mod cli;
mod corruption;
mod crash;
mod golden;
mod health;
mod property;
mod sla;
mod sync;
