namespace Peft;

public sealed partial class AdaptedLinear
{
    /// <summary>
    /// Adds a LoRA adapter created on the base weight's device and dtype (generated code calls this for each
    /// <see cref="LoRAAttribute"/>).
    /// </summary>
    /// <param name="adapterName">The adapter name, unique on this layer.</param>
    /// <param name="options">The LoRA options.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken or invalid, or the options do not fit the layer.</exception>
    public AdaptedLinear WithLoRA(string adapterName, LoRAOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        EnsureNameFree(adapterName);
        var adapter = new LoRAAdapter(adapterName, _in, _out, options, _weight.device, _weight.dtype, MemberName);
        try
        {
            return AddAdapter(adapter);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }
}
