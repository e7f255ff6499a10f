//! Python packages for the target image: platform tags, requirements, wheels and their installation.
