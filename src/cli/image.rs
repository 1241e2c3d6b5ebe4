//! `podcheck image build`: the agent as an OCI image archive.

use super::args::ImageBuildArgs;
use super::terminal::outln;
use super::{CONFORMANT, USAGE_OR_TARGET_ERROR};
use podcheck::errors::describe;
use podcheck::targets::local::find_agent;

pub fn build(args: &ImageBuildArgs) -> anyhow::Result<u8> {
    let agent = match find_agent(args.agent.as_ref()) {
        Ok(agent) => agent,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    match podcheck::image::build_agent_archive(&agent, &args.output, &args.tag) {
        Ok(image) => {
            outln!(
                "{} -> {} ({} bytes)",
                image.reference,
                args.output.display(),
                image.size
            )?;
            outln!("image id {}", image.config_digest)?;
            Ok(CONFORMANT)
        }
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            Ok(USAGE_OR_TARGET_ERROR)
        }
    }
}
