package main

import (
	"errors"
	"flag"
)

func importCmd(e *env, fs *flag.FlagSet, args []string) error { return errors.New("import: not yet") }
func dlqCmd(e *env, fs *flag.FlagSet, args []string) error    { return errors.New("dlq: not yet") }
