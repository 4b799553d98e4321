using System.CommandLine;
using Peft.Serialization;

namespace Peft.Cli;

/// <summary>
/// <c>peft convert --adapter TRAINED --initial INITIAL --output DIR</c>: PEFT's conversion of a PiSSA or OLoRA adapter, trained on
/// the residual base, into a plain LoRA of twice the rank for the original base (<see cref="LoRAConversion"/>).
/// </summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var adapterOption = new Option<string>("--adapter") { Description = "The trained PiSSA or OLoRA adapter directory (init_lora_weights \"pissa\", \"pissa_niter_K\" or \"olora\").", Required = true };
        var initialOption = new Option<string>("--initial") { Description = "The same adapter saved right after its initialisation, before training (A₀, B₀).", Required = true };
        var outputOption = new Option<string>("--output", "-o") { Description = "The directory of the converted plain LoRA adapter (r and lora_alpha doubled, init_lora_weights true).", Required = true };
        var command = new Command("convert", "Convert a PiSSA/OLoRA adapter into a plain LoRA for the original base model: A' = [A; A₀], B' = [B, −B₀] (PEFT's path_initial_model_for_weight_conversion).")
        {
            adapterOption, initialOption, outputOption,
        };
        command.SetAction(parse =>
        {
            string adapter = parse.GetRequiredValue(adapterOption);
            string initial = parse.GetRequiredValue(initialOption);
            string output = parse.GetRequiredValue(outputOption);
            foreach (var directory in new[] { adapter, initial })
            {
                if (!AdapterDirectory.IsAdapter(directory)) throw CliException.Usage($"{directory}: not an adapter directory ({AdapterFiles.ConfigFileName} is missing).");
            }

            int modules = LoRAConversion.ToOriginalBase(adapter, initial, output);
            parse.InvocationConfiguration.Output.WriteLine($"wrote {Path.GetFullPath(output)} ({modules} module(s) converted to plain LoRA for the original base)");
            return ExitCodes.Success;
        });
        return command;
    }
}
