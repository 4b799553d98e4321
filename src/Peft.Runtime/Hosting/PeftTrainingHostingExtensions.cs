using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Peft.Hosting;

/// <summary>Registers a hosted training run.</summary>
public static class PeftTrainingHostingExtensions
{
    /// <summary>
    /// Registers <see cref="PeftTrainingService{TJob}"/> with <see cref="PeftTrainingOptions"/> bound from the
    /// configuration section <paramref name="sectionName"/> of <paramref name="builder"/> (appsettings.json,
    /// environment variables, command line) and validated at start-up.
    /// </summary>
    /// <typeparam name="TJob">The job (model and data); created once per run through dependency injection.</typeparam>
    /// <param name="builder">The host builder, e.g. from <c>Host.CreateApplicationBuilder(args)</c>.</param>
    /// <param name="sectionName">The configuration section. Default <see cref="PeftTrainingOptions.DefaultSectionName"/>.</param>
    /// <returns><paramref name="builder"/>.</returns>
    public static IHostApplicationBuilder AddPeftTraining<TJob>(this IHostApplicationBuilder builder, string sectionName = PeftTrainingOptions.DefaultSectionName)
        where TJob : class, ITrainingJob
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddPeftTraining<TJob>(builder.Configuration.GetSection(sectionName));
        return builder;
    }

    /// <summary>
    /// Registers <see cref="PeftTrainingService{TJob}"/> with <see cref="PeftTrainingOptions"/> bound from
    /// <paramref name="section"/> and validated when the host starts (<c>ValidateOnStart</c>): a bad value stops the
    /// host with an <see cref="OptionsValidationException"/> whose message names the setting.
    /// </summary>
    /// <typeparam name="TJob">The job (model and data).</typeparam>
    /// <param name="services">The service collection.</param>
    /// <param name="section">The configuration section holding the settings.</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddPeftTraining<TJob>(this IServiceCollection services, IConfigurationSection section)
        where TJob : class, ITrainingJob
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<PeftTrainingOptions>()
            .Bind(section, binder => binder.ErrorOnUnknownConfiguration = true)
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<PeftTrainingOptions>>(new PeftTrainingOptionsValidator(section.Path));
        services.TryAddSingleton(sp => new PeftTrainingMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.AddHostedService<PeftTrainingService<TJob>>();
        return services;
    }
}
