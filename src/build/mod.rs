//! The build executor: runs a plan stage by stage, step by step, through the step cache.
