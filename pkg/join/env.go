package join

// Environment variables the printed join lines hand the bootstrap token
// through: a command line is world-readable (/proc/PID/cmdline, ps) for as
// long as the join runs, a process's environment only to its owner.
const (
	NodeAgentTokenEnv = "NODE_AGENT_TOKEN" // node-agent join
	InstallTokenEnv   = "VCS_TOKEN"        // install.sh
)
