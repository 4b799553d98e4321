using Peft.Cli;

// Ctrl+C and SIGTERM during `peft train` are handled by the generic host's console lifetime: the current step
// finishes, a checkpoint is written and the process exits with code 0.
return await PeftCli.RunAsync(args, Console.Out, Console.Error);
