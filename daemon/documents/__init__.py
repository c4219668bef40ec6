"""Pure document code: formats, bomb guards, extraction. No Redis, no processes of ours."""
