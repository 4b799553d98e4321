namespace Peft;

public sealed partial class AdaptedLinear
{
    /// <summary>
    /// Adds a Kronecker (LoKr) adapter created on the base weight's device and dtype (generated code calls this for each
    /// <see cref="KroneckerAttribute"/>).
    /// </summary>
    /// <param name="adapterName">The adapter name, unique on this layer.</param>
    /// <param name="options">The Kronecker options.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken or invalid, or the options are invalid.</exception>
    public AdaptedLinear WithKronecker(string adapterName, KroneckerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        EnsureNameFree(adapterName);
        var adapter = new KroneckerAdapter(adapterName, _in, _out, options, _weight.device, _weight.dtype, MemberName);
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
