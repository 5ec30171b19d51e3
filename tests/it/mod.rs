mod cli;
mod corruption;
mod crash;
mod property;
