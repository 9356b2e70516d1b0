"""Dashboard pages: sign-up and log-in, teams and members, invitations, API keys."""
