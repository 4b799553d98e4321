using System.Runtime.CompilerServices;

// The hosting tests drive the checkpoint writer's mid-write failure hook.
[assembly: InternalsVisibleTo("Peft.Hosting.Tests")]
