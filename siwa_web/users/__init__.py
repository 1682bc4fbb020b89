"""People and their Apple identities: find or create by Apple `sub`, link, delete, audit."""
