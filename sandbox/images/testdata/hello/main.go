// Command hello is the small program the package's tests build into images.
package main

import "fmt"

func main() { fmt.Println("hello") }
