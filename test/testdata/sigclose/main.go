// Command sigclose writes its stdin to a file and closes it while it
// catches SIGUSR1 (a signal it handles, as runtimes do): it prints the
// outcome of close. Used by the tests of killable commits.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGUSR1)
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	if _, err := io.Copy(f, os.Stdin); err != nil {
		fmt.Println("write:", err)
		os.Exit(1)
	}
	fmt.Println("closing")
	err = f.Close()
	fmt.Printf("close: %v\n", err)
}
