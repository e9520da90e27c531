"""Session structure in storage: templates of phases and each session's clock."""
