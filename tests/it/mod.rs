mod cli;
mod corruption;
mod crash;
mod golden;
mod property;
mod sync;
