using System.Runtime.CompilerServices;

// The safetensors tests drive the internal chunk-size knob and the mid-write failure hook.
// (Repeating this attribute elsewhere in the assembly is harmless.)
[assembly: InternalsVisibleTo("Peft.Runtime.Tests")]
