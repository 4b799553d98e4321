using HostedTraining;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Peft.Hosting;

// Settings come from appsettings.json, then environment variables (PeftTraining__TotalSteps=500), then the command
// line (--PeftTraining:TotalSteps=500). Ctrl+C or SIGTERM: the current step finishes, a checkpoint is written and the
// process exits; the next start resumes from it.
var builder = Host.CreateApplicationBuilder(args);
builder.AddPeftTraining<RegressionJob>();
builder.Services.AddOptions<SampleOptions>().Bind(builder.Configuration.GetSection("Sample"));

using var host = builder.Build();
try
{
    await host.StartAsync();
}
catch (Exception ex) when (ex is OptionsValidationException or InvalidOperationException)
{
    // ValidateOnStart failures and configuration values that do not convert: the message names the setting.
    Console.Error.WriteLine($"Invalid configuration: {ex.Message}");
    return 2;
}

await host.WaitForShutdownAsync();
return Environment.ExitCode;
