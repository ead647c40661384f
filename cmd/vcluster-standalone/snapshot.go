package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/controlplane"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/snapshot"
)

// passphraseEnv holds a snapshot passphrase for scripts (never a flag: ps
// shows every process's arguments to every user).
const passphraseEnv = "VCS_SNAPSHOT_PASSPHRASE"

func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list and restore snapshots of the control plane (etcd plus its CAs, keys and config)",
		Long: `A snapshot is one file (0600) holding a consistent copy of the etcd database and
everything needed to bring the same cluster back on a new host: the PKI with every
CA and key, the service-account key, the secrets-encryption key and the config. It
can be encrypted with a passphrase (age, scrypt). Scheduled snapshots are taken
every etcd.snapshots.interval (default 12h) into etcd.snapshots.dir (default
<dataDir>/snapshots), keeping etcd.snapshots.retention (default 5).

The passphrase comes from --passphrase-file, else the ` + passphraseEnv + `
environment variable, else a prompt on the terminal; never from a flag.`,
		Example: `  vcluster-standalone snapshot save /root/cluster.snap
  vcluster-standalone snapshot list
  systemctl stop vcluster-standalone && vcluster-standalone snapshot restore /root/cluster.snap

  # on a new host: install and restore in one step
  sh install.sh --restore /root/cluster.snap`,
	}
	cmd.AddCommand(newSnapshotSaveCommand(), newSnapshotListCommand(), newSnapshotRestoreCommand())
	return cmd
}

func newSnapshotSaveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "save [FILE]",
		Short: "Save a snapshot of the running control plane (default FILE: etcd.snapshots.dir/snapshot-<time>.snap)",
		Example: `  vcluster-standalone snapshot save
  vcluster-standalone snapshot save /root/cluster.snap --encrypt
  VCS_SNAPSHOT_PASSPHRASE=... vcluster-standalone snapshot save /root/cluster.snap --encrypt`,
		Args: cobra.MaximumNArgs(1),
	}
	configPath := configPathFlag(cmd)
	flags := config.AddFlags(cmd.Flags())
	encrypt := cmd.Flags().Bool("encrypt", false, "encrypt the snapshot with a passphrase (from --passphrase-file, $"+passphraseEnv+" or a prompt)")
	passFile := cmd.Flags().String("passphrase-file", "", "file whose first line is the passphrase (implies --encrypt)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := resolveConfig(cmd, *configPath, flags)
		if err != nil {
			return err
		}
		var pass []byte
		if *encrypt || *passFile != "" {
			if pass, err = passphrase(*passFile, true); err != nil {
				return err
			}
		}
		file := filepath.Join(c.Etcd.Snapshots.Dir, snapshot.ManualName(time.Now()))
		if len(args) == 1 {
			file = args[0]
		}
		_, err = controlplane.SaveSnapshot(cmd.Context(), c, *configPath, file, pass, cmd.ErrOrStderr())
		return err
	}
	return cmd
}

func newSnapshotListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the snapshots in etcd.snapshots.dir, oldest first",
		Example: `  vcluster-standalone snapshot list`,
		Args:    cobra.NoArgs,
	}
	configPath := configPathFlag(cmd)
	flags := config.AddFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := resolveConfig(cmd, *configPath, flags)
		if err != nil {
			return err
		}
		list, err := snapshot.List(c.Etcd.Snapshots.Dir)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintf(cmd.OutOrStdout(), "no snapshots in %s\n", c.Etcd.Snapshots.Dir)
			return nil
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "FILE\tTAKEN\tSIZE\tKIND\tENCRYPTED")
		for _, s := range list {
			kind := "manual"
			if s.Scheduled {
				kind = "scheduled"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\n", s.Path, s.Time.UTC().Format(time.RFC3339), snapshot.HumanBytes(s.Size), kind, s.Encrypted)
		}
		return w.Flush()
	}
	return cmd
}

func newSnapshotRestoreCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a snapshot onto this host while the control plane is stopped",
		Long: `Restore a snapshot onto this host: the etcd database, PKI, keys and the config.

The whole snapshot is read and verified first (every file's SHA-256, etcd's own
hash and database check); a corrupt, truncated or wrongly decrypted snapshot is
refused before anything is touched. It is refused too while a control plane runs.
The data dir is the snapshot's; what it held is moved to <dataDir>/pre-restore-<time>.
The snapshot's config is written to --config (a different file there is kept as
<file>.pre-restore-<time>). Then start the control plane: nodes reconnect
without re-joining when this host has the address the snapshot's cluster had.`,
		Example: `  systemctl stop vcluster-standalone
  vcluster-standalone snapshot restore /root/cluster.snap
  systemctl start vcluster-standalone`,
		Args: cobra.ExactArgs(1),
	}
	configPath := configPathFlag(cmd)
	passFile := cmd.Flags().String("passphrase-file", "", "file whose first line is the snapshot's passphrase")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if _, err := os.Stat(args[0]); err != nil {
			return fmt.Errorf("snapshot %s: %w", args[0], unwrapPath(err))
		}
		ask := func() ([]byte, error) { return passphrase(*passFile, false) }
		_, err := controlplane.RestoreSnapshot(args[0], *configPath, ask, cmd.ErrOrStderr())
		if errors.Is(err, snapshot.ErrPassphrase) {
			return fmt.Errorf("snapshot %s: wrong passphrase; nothing was changed", args[0])
		}
		var corrupt *snapshot.CorruptError
		if errors.As(err, &corrupt) {
			return fmt.Errorf("snapshot %s is corrupt or truncated (%s); nothing was changed", args[0], corrupt.Reason)
		}
		return err
	}
	return cmd
}

// passphrase reads it from file, else the environment, else the terminal
// (twice when confirm is set, for a new one).
func passphrase(file string, confirm bool) ([]byte, error) {
	if file != "" {
		return controlplane.ReadPassphrase(file)
	}
	if p := os.Getenv(passphraseEnv); p != "" {
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("a passphrase is needed: give --passphrase-file FILE or set %s (no terminal to ask on)", passphraseEnv)
	}
	fmt.Fprint(os.Stderr, "snapshot passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		fmt.Fprint(os.Stderr, "again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if string(again) != string(p) {
			return nil, errors.New("the passphrases differ")
		}
	}
	return p, nil
}

func unwrapPath(err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	return err
}
